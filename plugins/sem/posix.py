"""POSIX named semaphores through posix_ipc (glibc's sem_open on /dev/shm/sem.NAME).

A POSIX semaphore is a small shared file, mapped by every process that opened
it: inspect reads its value and glibc's waiter count from the file itself
(`read_state`), without opening the semaphore, and the processes that map the
file are its users.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any

from ipctool_plugins.sem.limits import SEM_VALUE_MAX

SHM_DIR = "/dev/shm"
PREFIX = "sem."


def path_of(name: str) -> str:
    return f"{SHM_DIR}/{PREFIX}{name[1:]}"


def read_state(path: str) -> tuple[int | None, int | None]:
    """(value, waiters) from the file: glibc's 64-bit sem_t keeps the value in the
    low 32 bits of its first 8 bytes and the count of sleeping waiters in the high
    32 (nptl's struct new_sem). (None, None) where the file cannot be read or the
    layout is not that one (not a 64-bit platform)."""
    if struct.calcsize("P") != 8:
        return None, None
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return None, None
    if len(head) != 8:
        return None, None
    value, waiters = struct.unpack("=II", head)
    return value, waiters


def translate(exc: Exception) -> OSError | None:
    """posix_ipc's exceptions as the OSError the kernel meant, for the verbs' naming()."""
    import posix_ipc

    if isinstance(exc, posix_ipc.ExistentialError):
        code = errno.EEXIST if "already exists" in str(exc) else errno.ENOENT
        return OSError(code, os.strerror(code))
    if isinstance(exc, posix_ipc.PermissionsError):
        return OSError(errno.EACCES, os.strerror(errno.EACCES))
    if isinstance(exc, posix_ipc.BusyError):
        return OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))
    return None


class PosixSem:
    """An open POSIX named semaphore."""

    def __init__(self, name: str, *, create: bool, value: int, mode: int) -> None:
        import posix_ipc

        self.label = name
        self.created = False
        self.sem: Any
        try:
            self.sem = posix_ipc.Semaphore(name)
        except posix_ipc.ExistentialError:
            if not create:
                raise
            self.sem = self._create(name, value, mode)

    def _create(self, name: str, value: int, mode: int) -> Any:
        import posix_ipc

        umask = os.umask(0)  # --mode means exactly that mode
        try:
            sem = posix_ipc.Semaphore(name, posix_ipc.O_CREX, mode, value)
            self.created = True
        except posix_ipc.ExistentialError:  # a peer made it first: use theirs
            sem = posix_ipc.Semaphore(name)
        finally:
            os.umask(umask)
        return sem

    def value(self) -> int:
        return int(self.sem.value)

    def waiters(self) -> int:
        """Sleeping waiters, as inspect counts them (see objects.live_waiters)."""
        from ipctool.api import ProcView
        from ipctool_plugins.sem.objects import live_waiters

        path = path_of(self.label)
        st = os.stat(path)
        mappers = set(ProcView().mapping_pids(st.st_dev, st.st_ino)) - {os.getpid()}
        return live_waiters(read_state(path)[1], mappers) or 0

    def set(self, value: int) -> None:
        """No sem_setvalue exists: take or post the difference, counted once (as
        SETVAL would, waiters woken by it then take their units)."""
        difference = value - self.value()
        for _ in range(difference):
            self.sem.release()
        for _ in range(-difference):
            if not self.try_take():
                break  # taken by someone else meanwhile: below the goal already

    def post(self, count: int, undo: bool = False) -> None:
        if self.value() + count > SEM_VALUE_MAX:  # sem_post says only EOVERFLOW
            raise OSError(errno.EOVERFLOW, os.strerror(errno.EOVERFLOW))
        for _ in range(count):
            self.sem.release()

    def try_take(self, count: int = 1, undo: bool = False) -> bool:
        import posix_ipc

        try:
            self.sem.acquire(0)
        except posix_ipc.BusyError:
            return False
        return True

    def take(self, count: int = 1, undo: bool = False) -> None:
        """Block until taken (sem_wait); a signal makes posix_ipc.SignalError."""
        self.sem.acquire()

    def close(self) -> None:
        self.sem.close()
