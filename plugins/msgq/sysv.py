"""SysV message queues through sysv_ipc (imported only by the verbs that use them)."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from types import ModuleType
from typing import Any

import sysv_ipc

from ipctool.api import (
    NotFound,
    PermissionDenied,
    TooLarge,
    WouldBlock,
    format_key,
    heartbeat_running,
    read_sysctl,
    read_table,
    signed_key,
    wait_for,
)
from ipctool_plugins.msgq.limits import check_size

PROC_TABLE = "/proc/sysvipc/msg"
MSGMAX = "/proc/sys/kernel/msgmax"


# sysv_ipc's exceptions for msgsnd's and msgrcv's errnos, for the calls made
# without it (--id's ctypes calls, the C batches), so that translate() and
# recover() see what they see from sysv_ipc.
_ERRORS: dict[int, type[Exception]] = {
    errno.EAGAIN: sysv_ipc.BusyError,
    errno.ENOMSG: sysv_ipc.BusyError,
    errno.EINTR: sysv_ipc.Error,  # what sysv_ipc raises when a signal interrupts a wait
    errno.EACCES: sysv_ipc.PermissionsError,
    errno.EPERM: sysv_ipc.PermissionsError,
    errno.EINVAL: sysv_ipc.ExistentialError,
    errno.EIDRM: sysv_ipc.ExistentialError,
    errno.ENOMEM: MemoryError,
}


def library_error(code: int) -> Exception:
    """The exception sysv_ipc raises for a call that failed with errno `code`."""
    return _ERRORS.get(code, OSError)(code, os.strerror(code))


def _load_batch() -> ModuleType | None:
    """The C batches of msgsnd/msgrcv calls (_batch.c, about twice as fast as a
    Python loop of sysv_ipc calls for small messages), or None: not built (no
    compiler where ipctool was installed), or IPCTOOL_NO_NATIVE is set."""
    if os.environ.get("IPCTOOL_NO_NATIVE", "") not in ("", "0"):
        return None
    try:
        from ipctool_plugins.msgq import _batch
    except ImportError:
        return None
    return _batch


_batch = _load_batch()
# A stream's pieces moved in one call of C's loops: it returns at the latest
# after these many (8 KiB each), so that a Ctrl-C that landed between two system
# calls, which ends no wait, is still acted on within a fraction of a millisecond.
PIECES_AT_ONCE = 64


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
        try:
            self.queue = self._open(create, mode)
        except sysv_ipc.ExistentialError:
            raise NotFound(self.label, "no such queue") from None
        except sysv_ipc.PermissionsError:
            raise PermissionDenied(self.label, "permission denied") from None
        self.message_limit = min(msgmax(), self._max_bytes() or msgmax())

    def _open(self, create: bool, mode: int) -> Any:
        # The receive buffer is sized to the system's largest message, so a
        # message is never cut short (sysv_ipc's default is 2048 bytes).
        size = self.buffer_size = msgmax()
        assert self.key is not None  # by_id() makes the queues reached by id
        if create:
            try:
                return sysv_ipc.MessageQueue(
                    signed_key(self.key), sysv_ipc.IPC_CREX, mode, max_message_size=size
                )
            except sysv_ipc.ExistentialError:
                pass  # it exists: use it as it is
        # An existing queue is opened asking for no permission: msgget would refuse
        # a write-only user who asked for read too; msgsnd and msgrcv check each.
        return sysv_ipc.MessageQueue(signed_key(self.key), 0, 0, max_message_size=size)

    @classmethod
    def by_id(cls, queue_id: int) -> SysvQueue:
        """The queue with this id, whatever its key (IPC_PRIVATE included)."""
        from ipctool_plugins.msgq.byid import QueueById, queue_bytes

        row = find_by_id(queue_id)  # NotFound before anything else
        queue = cls.__new__(cls)
        queue.key, queue.label = None, f"id {queue_id}"
        # A message over msg_qbytes would block forever: the limit is the smaller.
        room = queue_bytes(queue_id, int(row["qnum"])) or msgmax()
        queue.message_limit = queue.buffer_size = min(msgmax(), room)
        queue.queue = QueueById(queue_id, queue.message_limit)
        return queue

    def _max_bytes(self) -> int | None:
        """msg_qbytes, or None for a sender without read permission: msgsnd needs
        only write permission, but IPC_STAT needs read (msgmax still bounds a message)."""
        try:
            return self.queue.max_size
        except sysv_ipc.PermissionsError:
            return None

    def check_size(self, size: int) -> None:
        check_size(self.label, size, self.message_limit)

    def sending(self, mtype: int, nowait: bool, timeout: float | None) -> SysvQueue:
        """This queue as send's Outlet: messages of type mtype, waiting as asked."""
        self.mtype, self.nowait, self.timeout = mtype, nowait, timeout
        self.may_block = not nowait and timeout is None
        if _batch is not None and not nowait:  # its sends block
            self.send_pieces = self._send_pieces
        return self

    def _send_pieces(
        self, fd: int, channel: int, size: int, magic: bytes, control_size: int
    ) -> tuple[int, bool, int, bytes | None]:
        """A stream's pieces read from fd and sent in C's loop (see Outlet); a
        piece it did not send comes back, for put() to send or fail as usual."""
        assert _batch is not None  # sending() offers this only with the accelerator
        queue_id = self.queue.id
        return _batch.send_pieces(queue_id, channel, fd, size, PIECES_AT_ONCE, magic, control_size)

    def put(self, data: bytes, channel: int | None = None) -> None:
        """One message of type mtype (or of a stream's channel, a type of its own).

        Once the loop's heartbeat runs (a stream that has waited once), a message
        that fits goes in one blocking call: a stream's queue is full every other
        piece, and a failed try plus a wait of its own cost more than the piece."""
        mtype = channel or self.mtype
        block = self.may_block and len(data) <= self.message_limit and heartbeat_running()
        try:
            self.queue.send(data, block, mtype)  # the fast path: room in the queue
        except sysv_ipc.BusyError:  # full: wait for room (no second try first)
            self._wait_to_put(data, mtype)
        except Exception:  # a signal ended a blocking send, or an error: look closer
            self._put_slowly(data, mtype)

    def put_many(self, messages: list[bytes]) -> None:
        """put() for a batch: msgsnd in C's loop where the accelerator is built.
        Where it stops (a full queue, an error), that message takes put()'s slow
        path and the batch goes on after it."""
        if _batch is None:
            self._put_each(messages)
            return
        send_many, queue_id, mtype = _batch.send_many, self.queue.id, self.mtype
        done, total = 0, len(messages)
        while True:
            sent, error = send_many(queue_id, messages[done:] if done else messages, mtype)
            done += sent
            if done == total:
                return
            if error == errno.EAGAIN:  # full: wait for room (no second try first)
                self._wait_to_put(messages[done], mtype)
            else:
                self._put_slowly(messages[done], mtype)
            done += 1

    def _put_each(self, messages: list[bytes]) -> None:
        """put_many() without the accelerator, in one loop around sysv_ipc's send."""
        send, mtype = self.queue.send, self.mtype
        for data in messages:
            try:
                send(data, False, mtype)
            except sysv_ipc.BusyError:  # full: wait for room (no second try first)
                self._wait_to_put(data, mtype)
            except Exception:
                self._put_slowly(data, mtype)

    def _wait_to_put(self, data: bytes, mtype: int) -> None:
        if self.nowait:
            raise WouldBlock(self.label, "queue is full")
        if len(data) > self.message_limit:  # msgsnd would wait forever for room
            self.check_size(len(data))
        try:
            wait_for(
                lambda: self._send_if_it_can_fit(data, mtype),
                timeout=self.timeout,
                obj=self.label,
                signaled=sysv_ipc.Error,
            )
        except (sysv_ipc.Error, OSError) as exc:
            raise self.translate(exc) from None

    def _send_if_it_can_fit(self, data: bytes, mtype: int) -> None:
        """A blocking send, once msg_qbytes is seen to still hold the message: an
        admin may lower it while we wait (msgctl IPC_SET), and msgsnd then sleeps
        forever for room that cannot come. Looked at again after every wake."""
        room = self._max_bytes()
        if room is not None and len(data) > room:
            check_size(self.label, len(data), min(room, self.message_limit))
        self.queue.send(data, True, mtype)

    def _put_slowly(self, data: bytes, mtype: int) -> None:
        """After the fast send failed for another reason than a full queue."""
        self.check_size(len(data))  # msgsnd says only EINVAL for a message over msg_qbytes
        try:
            self.queue.send(data, False, mtype)
        except sysv_ipc.BusyError:
            self._wait_to_put(data, mtype)
        except ValueError:
            self.check_size(len(data))
            raise
        except (sysv_ipc.Error, OSError) as exc:
            raise self.translate(exc) from None

    def try_put(self, data: bytes, channel: int | None = None) -> None:
        self.queue.send(data, False, channel or self.mtype)

    def take_all(self, channel: int) -> None:
        """Remove the messages of one type (a stream's pieces that no one will read);
        a sender that may not read the queue leaves them."""
        receive = self.queue.receive
        with contextlib.suppress(sysv_ipc.BusyError, sysv_ipc.PermissionsError):
            while True:
                receive(False, channel)

    def receiving(
        self, mtype: int, _nowait: bool = False, _timeout: float | None = None
    ) -> SysvQueue:
        """This queue as recv's Inbox, selecting messages by type as msgrcv does;
        it takes batches in C (take_many) where the accelerator is built."""
        self.selector = mtype
        if _batch is not None:
            self.take_many = self._take_many
            self.receive_pieces = self._receive_pieces
        return self

    def _receive_pieces(
        self, channel: int, fd: int, block: bool, magic: bytes, control_size: int
    ) -> tuple[int, int, bytes | None, BaseException | None, OSError | None]:
        """A stream's pieces taken and written to fd in C's loop (see Inbox)."""
        assert _batch is not None  # receiving() offers this only with the accelerator
        queue_id, size = self.queue.id, self.buffer_size
        written, pieces, error, write_error, control = _batch.receive_pieces(
            queue_id, channel, size, fd, block, PIECES_AT_ONCE, magic, control_size
        )
        stop: BaseException | None = None
        if error == errno.EINTR:
            stop = InterruptedError(error, os.strerror(error))
        elif error:
            stop = library_error(error)  # ENOMSG: BusyError, as poller()'s receive says
        failed = OSError(write_error, os.strerror(write_error)) if write_error else None
        return written, pieces, control, stop, failed

    def _take_many(self, most: int) -> list[tuple[bytes, int]]:
        """Up to `most` waiting messages in C's loop, [] if none waits. It raises
        what sysv_ipc would only when the first cannot be taken: after a batch,
        the same cause stops the next call at once (a message too large stays
        first in the queue; a removed queue stays removed)."""
        assert _batch is not None  # receiving() offers this only with the accelerator
        queue_id, size = self.queue.id, self.buffer_size
        messages, error = _batch.receive_many(queue_id, most, self.selector, size)
        if error and not messages and error != errno.ENOMSG:
            raise library_error(error)
        return messages

    def poller(self, channel: int | None = None) -> tuple[Any, type[BaseException]]:
        """sysv_ipc's own non-blocking receive, and what it raises on an empty queue:
        recv's loops call it directly (errors go through translate())."""
        mtype = self.selector if channel is None else channel
        return functools.partial(self.queue.receive, False, mtype), sysv_ipc.BusyError

    def wait(self, channel: int | None, timeout: float | None) -> tuple[bytes, int]:
        """Block for a message; callers poll() first, so none is waiting now."""
        mtype = self.selector if channel is None else channel
        return wait_for(
            lambda: self.queue.receive(True, mtype),
            timeout=timeout,
            obj=self.label,
            signaled=sysv_ipc.Error,
            watch_stdout=True,
        )

    def put_back(self, messages: list[tuple[bytes, int]]) -> None:
        """Messages recv took but could not write, sent again with their types
        (never waiting: they were just taken, so there is room unless others
        filled it since)."""
        for data, mtype in messages:
            self.queue.send(data, False, mtype)

    def recover(self, exc: BaseException) -> bool:
        """E2BIG: a message larger than the receive buffer, which was sized to msgmax
        when the queue was opened. If msgmax has grown since, so does the buffer."""
        if not (isinstance(exc, OSError) and exc.errno == errno.E2BIG):
            return False
        size = msgmax()
        if size <= self.buffer_size:
            return False  # the message is larger than msgmax is now: translate() says so
        if self.key is None:
            from ipctool_plugins.msgq.byid import QueueById

            self.queue = QueueById(self.queue.id, size)
        else:
            self.queue = sysv_ipc.MessageQueue(signed_key(self.key), 0, 0, max_message_size=size)
        self.buffer_size = size
        return True

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
