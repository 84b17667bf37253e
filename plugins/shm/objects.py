"""shm's objects for the core's inspect and clean: every SysV segment
(/proc/sysvipc/shm) and POSIX object (/dev/shm, less the sem.* files of POSIX
semaphores).

In use, SysV: a process has it attached (from /proc/PID/maps), or the kernel
counts attachments no process we can see explains (another namespace's, or
another user's we may not look into). In use, POSIX: a process maps it or holds
it open.

Stale, SysV: no attachment, neither the creator nor the last attacher/detacher
alive, and idle (since the last attach, detach or change) for longer than
--older-than. Stale, POSIX: no process maps it or holds it open, and idle (since
its last change) for longer than --older-than.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ipctool.api import (
    IpcObject,
    NotFound,
    ObjectSource,
    PermissionDenied,
    ProcView,
    SysvRow,
    find_sysv_row,
    idle_for,
    iso_time,
    parse_ipc_target,
    pid_facts,
    read_sysctl,
    read_table,
    removal_errors,
    user_name,
)

SYSV_TABLE = "/proc/sysvipc/shm"
POSIX_DIR = "/dev/shm"
SHM_DEST = 0o1000  # perms bit: marked for removal, gone at the last detach
SHM_LOCKED = 0o2000


class ShmSource(ObjectSource):
    mechanism = "shm"
    noun = "segment"
    target_metavar = "KEY|/NAME"
    target_help = "SysV key (12345, 0x3039), POSIX /name, or --id=N."
    id_option = True
    example_target = "12345"
    stale_rule = (
        "not in use (SysV: nothing attached, creator and last pid dead; POSIX: no process "
        "maps it or holds it open)"
    )
    columns = (
        ("target", "target"),
        ("kind", "kind"),
        ("id", "id"),
        ("owner", "owner"),
        ("mode", "mode"),
        ("bytes", "size"),
        ("attached", "attached"),
        ("users", "users"),
        ("cpid", "creator_pid"),
        ("lpid", "last_pid"),
        ("removal", "marked_for_removal"),
        ("idle s", "idle_seconds"),
    )

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        found = [sysv_object(row, proc) for row in read_table(SYSV_TABLE)]
        for name in posix_names():
            try:
                found.append(posix_object(name, proc))
            except (NotFound, PermissionDenied):
                continue
        return found

    def find(self, target: str, proc: ProcView) -> IpcObject:
        where = parse_ipc_target(target)
        if where.name is not None:
            return posix_object(where.name, proc)
        return sysv_object(find_sysv_row(SYSV_TABLE, "shmid", where, self.noun), proc)

    def remove(self, obj: IpcObject) -> None:
        with removal_errors(obj.target, self.noun):
            if obj.kind == "posix":
                import posix_ipc

                posix_ipc.unlink_shared_memory(obj.target)
            else:
                import sysv_ipc

                sysv_ipc.remove_shared_memory(obj.id)

    def stale(self, obj: IpcObject, older_than: float) -> bool:
        alive = [
            f"{role} pid {obj.extra[role + '_pid']} alive"
            for role in ("creator", "last")
            if obj.extra.get(role + "_alive")
        ]
        if alive and not obj.in_use:
            obj.stale_reason = "not attached, but " + " and ".join(alive)
            return False
        return super().stale(obj, older_than)

    def limits(self) -> dict[str, Any]:
        page = os.sysconf("SC_PAGE_SIZE")
        sysv = {
            "shmmax": read_sysctl("/proc/sys/kernel/shmmax", 0),
            "shmall_pages": read_sysctl("/proc/sys/kernel/shmall", 0),
            "shmmni": read_sysctl("/proc/sys/kernel/shmmni", 4096),
            "page_size": page,
        }
        posix: dict[str, Any] = {"directory": POSIX_DIR}
        try:
            fs = os.statvfs(POSIX_DIR)
            posix["size"] = fs.f_blocks * fs.f_frsize
            posix["used"] = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
            posix["available"] = fs.f_bavail * fs.f_frsize
        except OSError as err:
            posix["error"] = err.strerror
        return {"sysv": sysv, "posix": posix}

    def describe(self, obj: IpcObject) -> str:
        return super().describe(obj) + f", {obj.size} bytes"


def sysv_object(row: dict[str, str], proc: ProcView) -> IpcObject:
    common = SysvRow(row, "shmid")
    cpid, lpid, nattch = common.ints("cpid", "lpid", "nattch")
    atime, dtime, ctime = common.ints("atime", "dtime", "ctime")
    attached = proc.sysv_shm_pids(common.id)
    unseen = nattch - len(attached)
    extra: dict[str, Any] = {
        **common.named(),
        "attached": nattch,
        **pid_facts("creator", cpid),
        **pid_facts("last", lpid),
        "holders": [],
        "mappers": attached,
        "attach_time": iso_time(atime),
        "detach_time": iso_time(dtime),
        "change_time": iso_time(ctime),
        "marked_for_removal": bool(common.perms & SHM_DEST),
        "locked": bool(common.perms & SHM_LOCKED),
    }
    return IpcObject(
        "shm",
        "sysv",
        common.target,
        size=int(row["size"]),
        capacity=int(row["size"]),
        users=attached,
        busy=f"attached {unseen} more time(s) by processes not visible here"
        if unseen > 0
        else None,
        created=None,
        extra=extra,
        **common.fields(atime, dtime, ctime),
    )


def posix_names() -> list[str]:
    """Every POSIX shm object: regular files in /dev/shm, less sem.* (semaphores)."""
    try:
        entries = list(os.scandir(POSIX_DIR))
    except OSError:
        return []
    return sorted(
        "/" + e.name
        for e in entries
        if not e.name.startswith("sem.") and e.is_file(follow_symlinks=False)
    )


def posix_object(name: str, proc: ProcView) -> IpcObject:
    from ipctool.api import from_os_error

    path = POSIX_DIR + name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise NotFound(name, "no such segment") from None
    except OSError as err:
        raise from_os_error(name, err) from None
    if not stat.S_ISREG(st.st_mode) or name.startswith("/sem."):
        raise NotFound(name, "no such segment (not a shared memory object)")
    holders = proc.holder_pids(st.st_dev, st.st_ino)
    mappers = proc.mapping_pids(st.st_dev, st.st_ino)
    extra: dict[str, Any] = {
        "key": None,
        "name": name,
        "creator": user_name(st.st_uid),
        "creator_uid": st.st_uid,
        "attached": len(set(mappers)),
        **pid_facts("creator", None),
        **pid_facts("last", None),
        "holders": holders,
        "mappers": mappers,
        "attach_time": None,
        "detach_time": None,
        "change_time": iso_time(st.st_ctime),
        "marked_for_removal": False,
        "locked": False,
    }
    return IpcObject(
        "shm",
        "posix",
        name,
        id=st.st_ino,
        uid=st.st_uid,
        mode=st.st_mode & 0o777,
        size=st.st_size,
        capacity=st.st_size,
        users=set(holders) | set(mappers),
        last_used=max(st.st_mtime, st.st_ctime),
        idle_seconds=idle_for(st.st_mtime, st.st_ctime),
        removable=may_unlink(st),
        extra=extra,
    )


def may_unlink(st: os.stat_result) -> bool:
    """/dev/shm is sticky: root, or the object's owner (or the directory's)."""
    if os.geteuid() == 0:
        return True
    try:
        directory = os.stat(POSIX_DIR)
    except OSError:
        return False
    return os.access(POSIX_DIR, os.W_OK) and os.geteuid() in (st.st_uid, directory.st_uid)
