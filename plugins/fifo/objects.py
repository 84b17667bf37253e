"""FIFOs for the core's inspect and clean.

Listed: one FIFO by path; every FIFO directly in a directory; with no target,
every FIFO some process holds open plus every FIFO directly in the usual
scratch directories (the core's: /tmp, /var/tmp, /dev/shm and $XDG_RUNTIME_DIR). In use: a process
holds it open (readers and writers, from /proc). Idle: since the last read,
write (the kernel updates a FIFO's atime and mtime as data moves).

Bytes waiting (FIONREAD) and capacity (F_GETPIPE_SZ) need a descriptor of the
pipe. Opening the FIFO ourselves would add a reader or writer and could wake or
break a peer, so the descriptor is a duplicate of one a holder already has
(pidfd_getfd), which changes nothing; without a holder the pipe is empty.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any

from ipctool.api import (
    IpcObject,
    NotFound,
    ObjectSource,
    ProcView,
    files_of_kind,
    idle_for,
    scratch_dirs,
)

F_GETPIPE_SZ = 1032
SYS_PIDFD_GETFD = 438  # the same number on every architecture (added in Linux 5.6)


class FifoSource(ObjectSource):
    mechanism = "fifo"
    noun = "FIFO"
    target_metavar = "PATH"
    target_help = "A FIFO's path, or (inspect, clean --stale) a directory to look in."
    example_target = "/tmp/jobs.fifo"
    stale_rule = "open by no process"
    columns = (
        ("target", "target"),
        ("owner", "owner"),
        ("mode", "mode"),
        ("readers", "readers"),
        ("writers", "writers"),
        ("waiting", "size"),
        ("capacity", "capacity"),
        ("idle s", "idle_seconds"),
    )

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        if scope is not None:
            return [fifo_object(path, proc) for path in fifos_in(scope)]
        paths = set(held_open(proc))
        for directory in scratch_dirs():
            paths.update(fifos_in(directory))
        found = []
        for path in sorted(paths):
            with contextlib.suppress(NotFound):
                found.append(fifo_object(path, proc))
        return found

    def is_scope(self, target: str) -> bool:
        return os.path.isdir(target) and not os.path.islink(target)

    def find(self, target: str, proc: ProcView) -> IpcObject:
        return fifo_object(target, proc)

    def remove(self, obj: IpcObject) -> None:
        st = lstat_fifo(obj.target)
        if (st.st_dev, st.st_ino) != (obj.extra["device"], obj.id):  # replaced since we looked
            raise NotFound(obj.target, "the FIFO changed since it was inspected; nothing removed")
        os.unlink(obj.target)

    def limits(self) -> dict[str, Any]:
        from ipctool.api import read_sysctl

        return {
            "pipe_max_size": read_sysctl("/proc/sys/fs/pipe-max-size", 1 << 20),
            "pipe_user_pages_soft": read_sysctl("/proc/sys/fs/pipe-user-pages-soft", 16384),
            "pipe_user_pages_hard": read_sysctl("/proc/sys/fs/pipe-user-pages-hard", 0),
            "default_capacity": 65536,
        }


def fifos_in(directory: str) -> list[str]:
    """Every FIFO directly in the directory (links are not followed)."""
    return files_of_kind(directory, stat.S_ISFIFO)


def held_open(proc: ProcView) -> list[str]:
    """Paths of the named FIFOs that some process has open."""
    paths = []
    for (device, inode), holders in proc.open_files_of_type(stat.S_IFIFO).items():
        link = proc.path_of(holders[0])
        if link.startswith("/") and not link.endswith(" (deleted)"):
            with contextlib.suppress(OSError):
                st = os.lstat(link)
                if (st.st_dev, st.st_ino) == (device, inode):
                    paths.append(link)
    return paths


def lstat_fifo(path: str) -> os.stat_result:
    from ipctool.api import UsageError, from_os_error

    try:
        st = os.lstat(path)
    except OSError as err:
        raise from_os_error(path, err) from None
    if not stat.S_ISFIFO(st.st_mode):
        raise UsageError(path, f"not a FIFO ({kind_of(st.st_mode)})")
    return st


def kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a FIFO"


def fifo_object(path: str, proc: ProcView) -> IpcObject:
    st = lstat_fifo(path)
    holders = proc.holders(st.st_dev, st.st_ino)
    readers = [h for h in holders if "r" in h.access]
    writers = [h for h in holders if "w" in h.access]
    opening = proc.opening_pids(st.st_dev, st.st_ino)  # blocked in open(): no fd yet
    waiting, capacity = pipe_fill(holders)
    extra = {
        "path": path,
        "readers": [{"pid": h.pid, "command": proc.command(h.pid)} for h in readers],
        "writers": [{"pid": h.pid, "command": proc.command(h.pid)} for h in writers],
        "opening": [{"pid": pid, "command": proc.command(pid)} for pid in opening],
        "device": st.st_dev,
    }
    return IpcObject(
        "fifo",
        "fifo",
        os.path.abspath(path),
        id=st.st_ino,
        uid=st.st_uid,
        mode=st.st_mode & 0o7777,
        size=waiting,
        capacity=capacity,
        users=[h.pid for h in holders] + opening,
        created=None,
        # a read updates atime, a write mtime; ctime also moves on chmod and utime,
        # which is no use of the FIFO
        last_used=max(st.st_atime, st.st_mtime),
        idle_seconds=idle_for(st.st_atime, st.st_mtime),
        removable=may_unlink(path, st),
        extra=extra,
    )


def may_unlink(path: str, st: os.stat_result) -> bool:
    """Write permission on the directory, and in a sticky one (/tmp) ownership too."""
    parent = os.path.dirname(os.path.abspath(path))
    if os.geteuid() == 0:
        return True
    try:
        directory = os.stat(parent)
    except OSError:
        return False
    if not os.access(parent, os.W_OK | os.X_OK):
        return False
    sticky = directory.st_mode & stat.S_ISVTX
    return not sticky or os.geteuid() in (st.st_uid, directory.st_uid)


def pipe_fill(holders: list[Any]) -> tuple[int | None, int | None]:
    """(bytes waiting, capacity) through a duplicate of a holder's descriptor."""
    if not holders:
        return 0, None  # the kernel frees a FIFO's buffer when the last holder closes
    for holder in holders:
        fd = borrow_fd(holder.pid, holder.fd)
        if fd is None:
            continue
        try:
            import array
            import fcntl
            import termios

            count = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, count)
            return count[0], fcntl.fcntl(fd, F_GETPIPE_SZ)
        except OSError:
            continue
        finally:
            os.close(fd)
    return None, None


def borrow_fd(pid: int, fd: int) -> int | None:
    """A duplicate of another process's descriptor (pidfd_getfd; needs ptrace rights)."""
    import ctypes

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        got = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
        return got if got >= 0 else None
    finally:
        os.close(pidfd)
