"""SysV message queues through sysv_ipc (imported only by the verbs that use them)."""

from __future__ import annotations

import errno
import functools
from typing import Any

import sysv_ipc

from ipctool.api import (
    NotFound,
    PermissionDenied,
    TooLarge,
    WouldBlock,
    format_key,
    read_sysctl,
    read_table,
    signed_key,
    wait_for,
)
from ipctool_plugins.msgq.limits import check_size

PROC_TABLE = "/proc/sysvipc/msg"
MSGMAX = "/proc/sys/kernel/msgmax"


def msgmax() -> int:
    return read_sysctl(MSGMAX, 8192)


def limits() -> dict[str, int]:
    return {
        "msgmax": msgmax(),
        "msgmnb": read_sysctl("/proc/sys/kernel/msgmnb", 16384),
        "msgmni": read_sysctl("/proc/sys/kernel/msgmni", 32000),
    }


def _rows() -> list[dict[str, str]]:
    return list(read_table(PROC_TABLE))


def find_by_id(queue_id: int) -> dict[str, str]:
    for row in _rows():
        if int(row["msqid"]) == queue_id:
            return row
    raise NotFound(f"id {queue_id}", "no such queue")


class SysvQueue:
    kind = "sysv"

    def __init__(self, key: int, *, create: bool = False, mode: int = 0o600) -> None:
        self.key: int | None = key  # None for a queue reached by id
        self.label = format_key(key)
        flags = sysv_ipc.IPC_CREAT if create else 0
        try:
            # The receive buffer is sized to the system's largest message, so a
            # message is never cut short (sysv_ipc's default is 2048 bytes).
            self.queue = sysv_ipc.MessageQueue(
                signed_key(key), flags, mode, max_message_size=msgmax()
            )
        except sysv_ipc.ExistentialError:
            raise NotFound(self.label, "no such queue") from None
        except sysv_ipc.PermissionsError:
            raise PermissionDenied(self.label, "permission denied") from None
        self.message_limit = min(msgmax(), self._max_bytes())

    @classmethod
    def by_id(cls, queue_id: int) -> SysvQueue:
        """The queue with this id, whatever its key (IPC_PRIVATE included)."""
        from ipctool_plugins.msgq.byid import QueueById, queue_bytes

        row = find_by_id(queue_id)  # NotFound before anything else
        queue = cls.__new__(cls)
        queue.key, queue.label = None, f"id {queue_id}"
        # A message over msg_qbytes would block forever: the limit is the smaller.
        room = queue_bytes(queue_id, int(row["qnum"])) or msgmax()
        queue.message_limit = min(msgmax(), room)
        queue.queue = QueueById(queue_id, queue.message_limit)
        return queue

    def _max_bytes(self) -> int:
        try:
            return self.queue.max_size
        except sysv_ipc.PermissionsError:
            raise PermissionDenied(self.label, "permission denied") from None

    def check_size(self, size: int) -> None:
        check_size(self.label, size, self.message_limit)

    def put(self, data: bytes, mtype: int, nowait: bool, timeout: float | None) -> None:
        try:
            self.queue.send(data, False, mtype)  # the fast path: room in the queue
        except Exception:
            self._put_slowly(data, mtype, nowait, timeout)

    def _put_slowly(self, data: bytes, mtype: int, nowait: bool, timeout: float | None) -> None:
        self.check_size(len(data))  # msgsnd says only EINVAL for a message over msg_qbytes
        try:
            try:
                self.queue.send(data, False, mtype)
                return
            except sysv_ipc.BusyError:
                if nowait:
                    raise WouldBlock(self.label, "queue is full") from None
            except ValueError:
                self.check_size(len(data))
                raise
            wait_for(
                lambda: self.queue.send(data, True, mtype),
                timeout=timeout,
                obj=self.label,
                signaled=sysv_ipc.Error,
            )
        except (sysv_ipc.Error, OSError) as exc:
            raise self.translate(exc) from None

    def poller(self, mtype: int) -> tuple[Any, type[BaseException]]:
        """sysv_ipc's own non-blocking receive, and what it raises on an empty queue:
        recv's loops call it directly (errors go through translate())."""
        return functools.partial(self.queue.receive, False, mtype), sysv_ipc.BusyError

    def wait(self, mtype: int, nowait: bool, timeout: float | None) -> tuple[bytes, int]:
        """Block for a message; callers poll() first, so none is waiting now."""
        if nowait:
            raise WouldBlock(self.label, "no message")
        try:
            return wait_for(
                lambda: self.queue.receive(True, mtype),
                timeout=timeout,
                obj=self.label,
                signaled=sysv_ipc.Error,
                watch_stdout=True,
            )
        except (sysv_ipc.Error, OSError) as exc:
            raise self.translate(exc) from None

    def translate(self, exc: BaseException) -> BaseException:
        """sysv_ipc's errors as ipctool's, with this queue named; others as they are."""
        if isinstance(exc, sysv_ipc.PermissionsError):
            return PermissionDenied(self.label, "permission denied")
        if isinstance(exc, sysv_ipc.ExistentialError):
            return NotFound(self.label, "queue was removed")
        if isinstance(exc, OSError) and exc.errno == errno.E2BIG:
            return TooLarge(
                self.label,
                f"a waiting message is larger than msgmax ({msgmax()} bytes) now; "
                "it stays in the queue",
            )
        return exc
