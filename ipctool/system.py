"""Facts about the running system that inspect and clean need in every plugin."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and runs (0 means "none recorded").

    A zombie (killed, not yet reaped by its parent) still answers kill(pid, 0)
    but will never act again: it counts as gone, so a peer waiting on it ends."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc to ask: kill(pid, 0) said it exists
    return state not in (b"Z", b"X")


def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def iso_time(timestamp: float) -> str | None:
    """Local time as ISO 8601, or None for 0 ("never")."""
    if not timestamp:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))


def read_sysctl(path: str, default: int) -> int:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def read_table(path: str) -> Iterator[dict[str, str]]:
    """Rows of a /proc/sysvipc-style table: a header line of names, then values."""
    with open(path) as f:
        header = f.readline().split()
        for line in f:
            values = line.split()
            if len(values) == len(header):
                yield dict(zip(header, values, strict=True))
