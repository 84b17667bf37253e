"""The one object model: every plugin describes what it can see as `IpcObject`s.

A mechanism hands the core an `ObjectSource` (named lazily by
`Mechanism(objects="pkg.mod:Source")`). The core's inspect and clean verbs,
and later `ls`, `clean --stale` across mechanisms, `limits` and `top`, work on
these records alone, so the safety rules of clean live in one place (here and
in ipctool/verbs.py) and a plugin supplies only kernel facts and what "in use"
and "stale" mean for its objects.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

from ipctool.errors import NotFound

DEFAULT_STALE_AGE = 86400.0  # clean --stale without --older-than: a day of no activity

# The keys of every record, in the order `inspect --json` writes them. README.md
# ("Object records") documents each; tests/test_objects.py checks it does.
COMMON_KEYS = (
    "mechanism",
    "kind",
    "target",
    "id",
    "owner",
    "uid",
    "mode",
    "size",
    "capacity",
    "users",
    "created",
    "last_used",
    "idle_seconds",
    "stale",
    "stale_reason",
    "removable",
)


class IpcObject:
    """One object of one mechanism, as the kernel shows it now.

    target: what to pass back to ipctool as ONE argument to address the object
    again. users: pids using it now (what "now" means is the mechanism's:
    holding an fd, mapping it, blocked on it, its last live peer). busy: why it
    is in use when no pid can be named (e.g. attached by processes in another
    namespace). removable: whether this user could remove it at all.
    extra: mechanism-specific facts, written next to the common keys.
    """

    __slots__ = (
        "busy",
        "capacity",
        "created",
        "extra",
        "id",
        "idle_seconds",
        "kind",
        "last_used",
        "mechanism",
        "mode",
        "removable",
        "size",
        "stale_reason",
        "target",
        "uid",
        "users",
    )

    def __init__(
        self,
        mechanism: str,
        kind: str,
        target: str,
        *,
        id: int | str | None = None,
        uid: int | None = None,
        mode: int | None = None,
        size: int | None = None,
        capacity: int | None = None,
        users: Iterable[int] = (),
        busy: str | None = None,
        created: float | None = None,
        last_used: float | None = None,
        idle_seconds: float | None = None,
        removable: bool = True,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.mechanism = mechanism
        self.kind = kind
        self.target = target
        self.id = id
        self.uid = uid
        self.mode = mode
        self.size = size
        self.capacity = capacity
        self.users = sorted(set(users) - {os.getpid()})  # ipctool itself is no user
        self.busy = busy
        self.created = created
        self.last_used = last_used
        self.idle_seconds = idle_seconds
        self.removable = removable
        self.extra = extra or {}
        self.stale_reason: str | None = None  # set by judge_stale

    @property
    def in_use(self) -> str | None:
        """Why the object is in use now, or None."""
        if self.users:
            return "in use by pid " + ", ".join(map(str, self.users))
        return self.busy

    @property
    def owner(self) -> str | None:
        from ipctool.system import user_name

        return None if self.uid is None else user_name(self.uid)

    def to_json(self, stale: bool | None = None) -> dict[str, Any]:
        from ipctool.system import iso_time

        record: dict[str, Any] = {
            "mechanism": self.mechanism,
            "kind": self.kind,
            "target": self.target,
            "id": self.id,
            "owner": self.owner,
            "uid": self.uid,
            "mode": None if self.mode is None else f"{self.mode & 0o7777:04o}",
            "size": self.size,
            "capacity": self.capacity,
            "users": self.users,
            "created": iso_time(self.created) if self.created else None,
            "last_used": iso_time(self.last_used) if self.last_used else None,
            "idle_seconds": None if self.idle_seconds is None else int(self.idle_seconds),
            "stale": stale,
            "stale_reason": self.stale_reason,
            "removable": self.removable,
        }
        for key, value in self.extra.items():
            record.setdefault(key, value)  # a common key always wins
        return record

    def __repr__(self) -> str:
        return f"IpcObject({self.mechanism}, {self.kind}, {self.target!r})"


def idle_for(*timestamps: float | None) -> float | None:
    """Seconds since the latest of these times (None when none is known)."""
    import time

    known = [t for t in timestamps if t]
    return max(0.0, time.time() - max(known)) if known else None


def judge_stale(obj: IpcObject, older_than: float) -> bool:
    """The core's stale rule: not in use, and idle for longer than `older_than`.

    Sets obj.stale_reason to why, whichever way the verdict goes.
    """
    busy = obj.in_use
    if busy:
        obj.stale_reason = busy
        return False
    if obj.idle_seconds is None:
        obj.stale_reason = "not in use; idle time unknown"
        return False
    idle = f"idle {format_age(obj.idle_seconds)}"
    if obj.idle_seconds <= older_than:
        obj.stale_reason = f"{idle}, not over {format_age(older_than)}"
        return False
    obj.stale_reason = f"{idle} and not in use"
    return True


def format_age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.0f}s"


class ObjectSource:
    """What a mechanism tells the core about its objects. Subclass it.

    Only `list`, `find` and `remove` are required. Methods receive the command's
    shared `ProcView` (one walk of /proc for every question asked of it).
    """

    mechanism = ""  # set by the subclass
    # `inspect` table: (column header, record key), keys of to_json()'s record.
    columns: Sequence[tuple[str, str]] = (
        ("target", "target"),
        ("kind", "kind"),
        ("owner", "owner"),
        ("mode", "mode"),
        ("size", "size"),
        ("users", "users"),
        ("idle", "idle_seconds"),
    )
    # Extra keys of a record that clean's --json report carries.
    report_keys: Sequence[str] = ()
    noun = "object"  # "queue", "FIFO": for messages such as "no such queue"
    # How the generic verbs take a target: metavar and help, and whether the
    # SysV `--id N` option is offered (it becomes the target "--id=N").
    target_metavar = "TARGET"
    target_help = "The object."
    id_option = False
    # clean --stale only in a place the user names (a directory), never over the
    # whole listing: for mechanisms whose objects are ordinary files.
    stale_needs_scope = False
    # `clean TARGET --force` removes an object in use. False where remove() refuses
    # one anyway (a live socket): clean's refusal then offers no --force.
    force_removes_in_use = True
    # Why no object of this mechanism is ever stale (a UDP socket lives exactly as
    # long as a process holds it), or None: clean --stale then says so on stderr
    # and removes nothing, and every record's stale_reason says it.
    never_stale: str | None = None

    def objects(self, proc: Any, scope: str | None = None) -> Iterable[IpcObject]:
        """Every object this user can see; with a scope (see is_scope), those in it."""
        raise NotImplementedError

    def is_scope(self, target: str) -> bool:
        """Whether a target names a set to look in (a directory), not one object."""
        return False

    def find(self, target: str, proc: Any) -> IpcObject:
        """The object `target` names; NotFound (or UsageError) if none."""
        for obj in self.objects(proc):
            if obj.target == target:
                return obj
        raise NotFound(target, f"no such {self.noun}")

    def remove(self, obj: IpcObject) -> None:
        raise NotImplementedError

    def limits(self) -> dict[str, Any]:
        """The kernel's limits for this mechanism (name -> value, or groups of them)."""
        return {}

    def unremovable(self, obj: IpcObject) -> str:
        """Why `clean` cannot remove an object that is not `removable` (exit 4)."""
        return f"{self.noun} cannot be removed by this user"

    def stale(self, obj: IpcObject, older_than: float) -> bool:
        """Whether clean --stale may remove it; override for other rules."""
        if self.never_stale:
            obj.stale_reason = self.never_stale
            return False
        return judge_stale(obj, older_than)

    def describe(self, obj: IpcObject) -> str:
        """The object in a clean report line: 'sysv queue 0x00003039 (id 3)'."""
        ident = f" (id {obj.id})" if obj.id is not None and obj.kind != obj.mechanism else ""
        kind = "" if obj.kind == obj.mechanism else f"{obj.kind} "  # fifo's kind is fifo
        return f"{kind}{self.noun} {obj.target}{ident}"

    def notes(self) -> list[str]:
        """Warnings about what `list` could not see (said once on stderr)."""
        return []
