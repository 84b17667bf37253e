"""Mapped files for the core's inspect and clean.

Listed: one file by path; every regular file directly in a directory (links
not followed); with no target, every regular file some process maps MAP_SHARED
(from /proc/PID/maps, the processes this user may look into; /dev/shm is shm's)
plus ipctool's own files directly in the scratch directories (SCRATCH_DIRS and
$XDG_RUNTIME_DIR). Both are bounded: what processes map now, and one small read
per file in a few directories, never a walk of the filesystem.

In use: a process maps it or holds it open. Idle: since the last access or
change (atime, mtime; mapping a file updates its atime). ipctool's mark (a
valid blackboard trailer or ring header) is read with O_NOATIME, so looking
never makes a file look used.

Stale (clean --stale DIR only: never a default directory): the file carries
ipctool's mark, no process maps it or holds it open, and it was idle for
longer than --older-than. A file without the mark is never stale, however
old: a directory named to clean is full of ordinary files; name one to remove it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from typing import Any

from ipctool import api
from ipctool.api import IpcObject, NotFound, ObjectSource, ProcView, idle_for

SCRATCH_DIRS = ("/tmp", "/var/tmp")
RING_MAGIC = int.from_bytes(b"ipcring1", "little")
TRAILER_MAGIC = int.from_bytes(b"ipctool\x01", "little")


class MmapSource(ObjectSource):
    mechanism = "mmap"
    noun = "file"
    target_metavar = "PATH"
    target_help = "A file's path, or (inspect, clean --stale) a directory to look in."
    example_target = "/tmp/board"
    stale_rule = (
        "under the DIR named (never a default directory), carrying ipctool's mark "
        "(a blackboard trailer or ring header) and mapped or open by no process"
    )
    stale_needs_scope = True
    columns = (
        ("target", "target"),
        ("owner", "owner"),
        ("mode", "mode"),
        ("size", "size"),
        ("mark", "mark"),
        ("mappers", "mappers"),
        ("idle s", "idle_seconds"),
    )

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        paths: set[str] = set()
        if scope is not None:
            paths.update(files_in(scope))
        else:
            paths.update(shared_mapped(proc))
            for directory in scratch_dirs():
                paths.update(p for p in files_in(directory) if mark_of(p) is not None)
        found = []
        for path in sorted(paths):
            with contextlib.suppress(NotFound):
                found.append(file_object(path, proc))
        return found

    def is_scope(self, target: str) -> bool:
        return os.path.isdir(target) and not os.path.islink(target)

    def find(self, target: str, proc: ProcView) -> IpcObject:
        return file_object(target, proc)

    def remove(self, obj: IpcObject) -> None:
        from ipctool_plugins.mmap.files import unlink_regular

        if not unlink_regular(obj.target, (obj.extra["device"], obj.id)):  # replaced since
            raise NotFound(obj.target, "the file changed since it was inspected; nothing removed")

    def stale(self, obj: IpcObject, older_than: float) -> bool:
        from ipctool.objects import judge_stale

        if obj.extra.get("mark") is None:
            obj.stale_reason = "no ipctool mark (trailer or ring): name it to remove it"
            return False
        return judge_stale(obj, older_than)

    def describe(self, obj: IpcObject) -> str:
        return f"file {obj.target}"

    def limits(self) -> dict[str, Any]:
        from ipctool.api import read_sysctl

        return {
            "page_size": os.sysconf("SC_PAGE_SIZE"),
            "max_map_count": read_sysctl("/proc/sys/vm/max_map_count", 65530),
            "protected_symlinks": read_sysctl("/proc/sys/fs/protected_symlinks", 0),
            "protected_regular": read_sysctl("/proc/sys/fs/protected_regular", 0),
        }


def scratch_dirs() -> list[str]:
    return api.scratch_dirs(SCRATCH_DIRS)


def files_in(directory: str) -> list[str]:
    """Every regular file directly in the directory (links are not followed)."""
    return api.files_of_kind(directory, stat.S_ISREG)


def shared_mapped(proc: ProcView) -> list[str]:
    """Paths of the regular files some process maps MAP_SHARED (and that the path
    still names); POSIX shm objects in /dev/shm are the shm plugin's."""
    paths = []
    for (device, inode), path in proc.shared_mappings().items():
        if not path.startswith("/") or path.startswith("/dev/shm/"):
            continue
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (device, inode):
                paths.append(path)
    return paths


def mark_of(path: str) -> str | None:
    """'blackboard' or 'ring' for a file carrying ipctool's layout, else None (also
    when it cannot be read without touching its atime: another user's)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOATIME)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size < 16:
            return None
        if struct.unpack("<Q", os.pread(fd, 8, 0).ljust(8, b"\0"))[0] == RING_MAGIC:
            return "ring"
        end, check = struct.unpack("<QQ", os.pread(fd, 16, st.st_size - 16).ljust(16, b"\0"))
        if check == end ^ TRAILER_MAGIC and end <= st.st_size - 16:
            return "blackboard"
        return None
    except OSError:
        return None
    finally:
        os.close(fd)


def file_object(path: str, proc: ProcView) -> IpcObject:
    from ipctool_plugins.mmap.files import lstat_regular

    st = lstat_regular(path)
    mappers = proc.mapping_pids(st.st_dev, st.st_ino)
    holders = proc.holder_pids(st.st_dev, st.st_ino)
    extra = {
        "path": path,
        "mark": mark_of(path),
        "mappers": [{"pid": pid, "command": proc.command(pid)} for pid in mappers],
        "holders": [{"pid": pid, "command": proc.command(pid)} for pid in holders],
        "device": st.st_dev,
    }
    return IpcObject(
        "mmap",
        "file",
        os.path.abspath(path),
        id=st.st_ino,
        uid=st.st_uid,
        mode=st.st_mode & 0o7777,
        size=st.st_size,
        capacity=st.st_size,
        users=[*mappers, *holders],
        created=None,
        last_used=max(st.st_atime, st.st_mtime),
        idle_seconds=idle_for(st.st_atime, st.st_mtime),
        removable=may_unlink(path, st),
        extra=extra,
    )


def may_unlink(path: str, st: os.stat_result) -> bool:
    """Write permission on the directory, and in a sticky one (/tmp) ownership too."""
    if os.geteuid() == 0:
        return True
    parent = os.path.dirname(os.path.abspath(path))
    try:
        directory = os.stat(parent)
    except OSError:
        return False
    if not os.access(parent, os.W_OK | os.X_OK):
        return False
    sticky = directory.st_mode & stat.S_ISVTX
    return not sticky or os.geteuid() in (st.st_uid, directory.st_uid)
