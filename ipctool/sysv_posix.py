"""What the objects of SysV and POSIX mechanisms (msgq, sem, shm) share: the
/proc/sysvipc row of a key or id, the facts every row has, and sysv_ipc's and
posix_ipc's removal errors as ones naming the object.

Imported only by those mechanisms' ObjectSources (through ipctool.api), never on
start; neither library is imported here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ipctool.errors import NotFound, PermissionDenied
from ipctool.objects import idle_for

if TYPE_CHECKING:
    from ipctool.targets import IpcTarget


def find_sysv_row(table: str, id_column: str, where: IpcTarget, noun: str) -> dict[str, str]:
    """The /proc/sysvipc row of the object a SysV `IpcTarget` names, by key or by id
    (the table's `id_column`: msqid, semid, shmid); NotFound ("no such NOUN") if none."""
    from ipctool.system import read_table

    for row in read_table(table):
        if where.id is not None and int(row[id_column]) == where.id:
            return row
        if where.key is not None and int(row["key"]) & 0xFFFFFFFF == where.key:
            return row
    raise NotFound(where.label, f"no such {noun}")


class SysvRow:
    """The facts every /proc/sysvipc row has, read once: key, id, permissions, owner
    and creator; `fields(*times)` gives the IpcObject keywords they make."""

    __slots__ = ("cuid", "id", "key", "perms", "row", "uid")

    def __init__(self, row: dict[str, str], id_column: str) -> None:
        self.row = row
        self.key = int(row["key"]) & 0xFFFFFFFF
        self.id = int(row[id_column])
        self.perms = int(row["perms"], 8)
        self.uid, self.cuid = int(row["uid"]), int(row["cuid"])

    @property
    def target(self) -> str:
        """What addresses it again: its key, or `--id=N` for an IPC_PRIVATE object."""
        from ipctool.targets import format_key

        return format_key(self.key) if self.key else f"--id={self.id}"

    @property
    def removable(self) -> bool:
        """Only root, the owner or the creator may remove a SysV object (IPC_RMID)."""
        return os.geteuid() in (0, self.uid, self.cuid)

    def ints(self, *columns: str) -> list[int]:
        return [int(self.row[column]) for column in columns]

    def named(self) -> dict[str, Any]:
        """The extra keys a SysV record starts with: key, name (none), its creator."""
        from ipctool.system import user_name

        return {
            "key": self.key,
            "name": None,
            "creator": user_name(self.cuid),
            "creator_uid": self.cuid,
        }

    def fields(self, *times: int) -> dict[str, Any]:
        """IpcObject's id, uid, mode, last_used, idle_seconds and removable; `times`
        are the row's activity times (0 where none is recorded)."""
        return {
            "id": self.id,
            "uid": self.uid,
            "mode": self.perms & 0o777,
            "last_used": max(times),
            "idle_seconds": idle_for(*times),
            "removable": self.removable,
        }


def pid_facts(role: str, pid: int | None) -> dict[str, Any]:
    """`ROLE_pid` and `ROLE_alive` of a record: a pid the kernel recorded (0: none)
    and whether it lives; both None where the kind of object records none."""
    if pid is None:
        return {f"{role}_pid": None, f"{role}_alive": None}
    from ipctool.system import pid_alive

    return {f"{role}_pid": pid or None, f"{role}_alive": pid_alive(pid)}


@contextmanager
def removal_errors(target: str, noun: str) -> Iterator[None]:
    """sysv_ipc's and posix_ipc's ExistentialError and PermissionsError inside the
    block become NotFound ("no such NOUN") and PermissionDenied naming `target`.

    Neither library is imported here: an exception of one was raised by it, so it
    is loaded already when one is to be told apart."""
    try:
        yield
    except Exception as err:
        libraries = [sys.modules.get(name) for name in ("sysv_ipc", "posix_ipc")]
        for library in filter(None, libraries):
            if isinstance(err, library.ExistentialError):
                raise NotFound(target, f"no such {noun}") from None
            if isinstance(err, library.PermissionsError):
                raise PermissionDenied(target, "permission denied") from None
        raise
