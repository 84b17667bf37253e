"""Facts about the running system that inspect and clean need in every plugin."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (0 means "none recorded")."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def pids_holding(device: int, inode: int) -> list[int]:
    """Pids of processes with an open descriptor on this (device, inode)."""
    holders = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if st.st_ino == inode and st.st_dev == device:
                holders.append(int(entry))
                break
    return holders


def idle_seconds(*timestamps: float) -> int:
    """Seconds since the latest of these times (the object's last activity)."""
    return max(0, int(time.time() - max(timestamps)))


def pids_in_syscall(numbers: set[int], first_argument: int) -> list[int]:
    """Pids of processes with a thread blocked right now in one of these system
    calls with this first argument (from /proc/PID/task/TID/syscall; processes
    we may not trace are skipped).

    A process waiting in msgrcv on a queue leaves no other trace of its use.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            threads = os.listdir(f"/proc/{entry}/task")
        except OSError:
            continue
        for thread in threads:
            try:
                with open(f"/proc/{entry}/task/{thread}/syscall") as f:
                    fields = f.read().split()
            except OSError:
                continue
            blocked_here = len(fields) > 1 and fields[0].isdigit() and int(fields[0]) in numbers
            if blocked_here and int(fields[1], 16) == first_argument:
                found.append(int(entry))
                break
    return found
