"""The mqueue filesystem of this process's IPC namespace: where POSIX queues are listed.

A mount at /dev/mqueue shows the queues of the IPC namespace that mounted it,
which after `unshare --ipc` is not ours. So a found mount is checked against a
probe queue of our own; root, when no mount fits, mounts a fresh one in a
private mount namespace of this process alone (nothing outside it changes).
"""

from __future__ import annotations

import ctypes
import os
from functools import cache

MOUNT_HINT = "as root: mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue"
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18


def mounted() -> list[str]:
    with open("/proc/self/mounts") as f:
        rows = [line.split() for line in f]
    return [fields[1] for fields in rows if len(fields) > 2 and fields[2] == "mqueue"]


def our_device() -> int | None:
    """st_dev of this IPC namespace's mqueue filesystem, learned from a probe queue."""
    import posix_ipc

    name = f"/ipctool-probe-{os.getpid()}"
    try:
        probe = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, 0o600, 1, 1)
    except (posix_ipc.Error, OSError, ValueError):
        return None
    try:
        return os.fstat(probe.mqd).st_dev
    finally:
        probe.close()
        probe.unlink()


def private_mount() -> str | None:
    """Mount this namespace's mqueue filesystem where only this process sees it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        return None
    # Without this, a shared / would carry the new mount back to the host.
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        return None
    for path in ("/dev/mqueue", "/mnt", "/tmp"):  # any directory: the mount is private
        if os.path.isdir(path) and libc.mount(b"mqueue", path.encode(), b"mqueue", 0, None) == 0:
            return path
    return None


@cache
def directory() -> tuple[str, str | None]:
    """(where our queues are listed, None) or ("", why they cannot be)."""
    mounts = mounted()
    device = our_device() if mounts else None
    for path in mounts:
        if device is None or os.stat(path).st_dev == device:
            return path, None
    if os.geteuid() == 0:
        private = private_mount()
        if private:
            return private, None
    if mounts:
        return "", f"the mqueue mount at {mounts[0]} belongs to another IPC namespace"
    return "", f"no mqueue filesystem is mounted ({MOUNT_HINT})"


def status(name: str) -> dict[str, int]:
    """QSIZE and friends, from the queue's file: bytes of messages waiting."""
    path, _ = directory()
    if not path:
        return {}
    try:
        with open(os.path.join(path, name.lstrip("/"))) as f:
            return {k: int(v) for k, v in (item.split(":", 1) for item in f.read().split())}
    except (OSError, ValueError):
        return {}


def stat(name: str) -> tuple[os.stat_result, dict[str, int]]:
    """The queue's file when we may not open the queue itself."""
    from ipctool.api import PermissionDenied

    path, _ = directory()
    if not path:
        raise PermissionDenied(name, "permission denied")
    return os.stat(os.path.join(path, name.lstrip("/"))), status(name)
