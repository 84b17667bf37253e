"""SysV semaphore sets through ctypes: semget, semop and semctl on any element.

sysv_ipc drives element 0 of a set only and opens sets by key only; ipctool
needs every element (`--index N`), sets only an id reaches (`--id`, IPC_PRIVATE,
`ipcmk -S 3`), SEM_UNDO per operation, and the per-element counts inspect shows
(GETNCNT, GETZCNT, GETPID). So the calls are made here, directly, on every
kind of set alike. Errors are OSError with the kernel's errno; the verbs name them.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ipctool.api import IpcTarget
from ipctool_plugins.sem.limits import SEMVMX

IPC_CREAT, IPC_EXCL, IPC_NOWAIT = 0o1000, 0o2000, 0o4000
IPC_RMID = 0
GETPID, GETVAL, GETALL, GETNCNT, GETZCNT, SETVAL = 11, 12, 13, 14, 15, 16
SEM_UNDO = 0x1000


def elements_max() -> int:
    """Elements a set may have: SEMMSL (the first of kernel.sem), and sem_num is 16 bits."""
    try:
        with open("/proc/sys/kernel/sem") as f:
            semmsl = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        semmsl = 250  # the kernel's old default
    return min(semmsl, 1 << 16)


class SemBuf(ctypes.Structure):
    _fields_ = [
        ("sem_num", ctypes.c_ushort),
        ("sem_op", ctypes.c_short),
        ("sem_flg", ctypes.c_short),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.semget.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
_libc.semget.restype = ctypes.c_int
_libc.semop.argtypes = [ctypes.c_int, ctypes.POINTER(SemBuf), ctypes.c_size_t]
_libc.semop.restype = ctypes.c_int
_libc.semctl.restype = ctypes.c_int  # variadic: arguments are typed at each call


def _fail() -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code))  # EINTR makes an InterruptedError


def semget(key: int, nsems: int, flags: int) -> int:
    from ipctool.api import signed_key

    semid = _libc.semget(signed_key(key), nsems, flags)
    if semid == -1:
        raise _fail()
    return int(semid)


def semctl(semid: int, index: int, command: int, value: int = 0) -> int:
    # union semun is passed by value: a long holds its int member where C reads it
    got = _libc.semctl(ctypes.c_int(semid), ctypes.c_int(index), ctypes.c_int(command),
                       ctypes.c_long(value))  # fmt: skip
    if got == -1:
        raise _fail()
    return int(got)


def semop(semid: int, index: int, delta: int, flags: int = 0) -> None:
    op = SemBuf(index, delta, flags)
    if _libc.semop(semid, ctypes.byref(op), 1) == -1:
        raise _fail()


def remove(semid: int) -> None:
    semctl(semid, 0, IPC_RMID)


def element(semid: int, index: int) -> dict[str, int | None]:
    """What semctl says of one element (None where we may not read it)."""
    facts: dict[str, int | None] = {}
    for name, command in (("value", GETVAL), ("waiting", GETNCNT), ("waiting_zero", GETZCNT),
                          ("last_pid", GETPID)):  # fmt: skip
        try:
            facts[name] = semctl(semid, index, command)
        except OSError:
            facts[name] = None
    return facts


class SysvSem:
    """One element of a SysV set, opened by key or id."""

    def __init__(self, semid: int, index: int, label: str, created: bool = False) -> None:
        self.semid = semid
        self.index = index
        self.label = label
        self.created = created

    @classmethod
    def open(cls, where: IpcTarget, *, index: int, create: bool, value: int, mode: int) -> SysvSem:
        if where.id is not None:
            semctl(where.id, 0, GETVAL)  # EINVAL (no such id), EACCES: said by the caller
            return cls(where.id, index, f"--id={where.id}")
        assert where.key is not None
        while True:
            try:
                return cls(semget(where.key, 0, 0), index, where.label)
            except FileNotFoundError:
                if not create:
                    raise
            try:  # made here and now, or by a peer between the two calls: open theirs
                semid = semget(where.key, index + 1, IPC_CREAT | IPC_EXCL | mode)
            except FileExistsError:
                continue
            # The initial value as an operation, not SETVAL: a peer's post that
            # lands between semget and here adds to it instead of being overwritten.
            if value:
                semop(semid, index, value)
            return cls(semid, index, where.label, created=True)

    def value(self) -> int:
        return semctl(self.semid, self.index, GETVAL)

    def waiters(self) -> int:
        return semctl(self.semid, self.index, GETNCNT) + semctl(self.semid, self.index, GETZCNT)

    def set(self, value: int) -> None:
        semctl(self.semid, self.index, SETVAL, value)

    def post(self, count: int, undo: bool = False) -> None:
        try:
            current = self.value()
        except PermissionError:  # may alter (mode -w-) but not read: semop says ERANGE
            current = 0
        if current + count > SEMVMX:  # the kernel says only ERANGE
            raise OSError(errno.ERANGE, os.strerror(errno.ERANGE))
        semop(self.semid, self.index, count, SEM_UNDO if undo else 0)

    def try_take(self, count: int = 1, undo: bool = False) -> bool:
        try:
            semop(self.semid, self.index, -count, IPC_NOWAIT | (SEM_UNDO if undo else 0))
        except BlockingIOError:
            return False
        return True

    def take(self, count: int = 1, undo: bool = False) -> None:
        """Block until taken; a signal makes InterruptedError (for wait_for)."""
        semop(self.semid, self.index, -count, SEM_UNDO if undo else 0)
