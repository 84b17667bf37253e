"""POSIX message queues through posix_ipc (imported only by the verbs that use them)."""

from __future__ import annotations

import os
import select
from typing import Any

import posix_ipc

from ipctool.api import (
    IpcError,
    NotFound,
    PermissionDenied,
    Timeout,
    WouldBlock,
    from_os_error,
    read_sysctl,
    retry_until,
    when_ready,
)
from ipctool_plugins.msgq.limits import check_size

SYSCTL = "/proc/sys/fs/mqueue/"


def limits() -> dict[str, int]:
    return {
        name: read_sysctl(SYSCTL + name, default)
        for name, default in (
            ("msg_max", 10),
            ("msgsize_max", 8192),
            ("queues_max", 256),
            ("msg_default", 10),
            ("msgsize_default", 8192),
        )
    }


def _errors(name: str, exc: Exception) -> Exception:
    if isinstance(exc, posix_ipc.ExistentialError):
        return NotFound(name, "no such queue")
    if isinstance(exc, posix_ipc.PermissionsError):
        return PermissionDenied(name, "permission denied")
    return exc


# posix_ipc turns mq_open's EMFILE and ENOSPC into these texts, without an errno
_EMFILE_TEXT = "maximum number of files open"
_ENOSPC_TEXT = "insufficient space for a new queue"


def _open_error(name: str, exc: OSError, creating: bool) -> Exception:
    """mq_open's errors, with the limit that was hit named.

    EMFILE also means the user's RLIMIT_MSGQUEUE has no room for a new queue's
    messages, and ENOSPC means queues_max: the C library's words say neither.
    """
    import errno

    text = str(exc).lower()
    if creating and (exc.errno == errno.EMFILE or _EMFILE_TEXT in text) and not _out_of_fds():
        import resource

        allowed = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
        wanted = limits()
        return IpcError(
            name,
            f"RLIMIT_MSGQUEUE (ulimit -q: {allowed} bytes for all of this user's POSIX "
            f"queues) has no room for a queue of {wanted['msg_default']} messages of "
            f"{wanted['msgsize_default']} bytes",
        )
    if exc.errno == errno.ENOSPC or _ENOSPC_TEXT in text:
        return IpcError(
            name,
            f"queues_max ({limits()['queues_max']}) reached: the system takes no more "
            f"POSIX queues ({SYSCTL}queues_max)",
        )
    return from_os_error(name, exc)


def _out_of_fds() -> bool:
    """Whether this process has as many descriptors open as RLIMIT_NOFILE allows."""
    import resource

    return len(os.listdir("/proc/self/fd")) >= resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class PosixQueue:
    kind = "posix"

    def __init__(
        self, name: str, *, create: bool = False, mode: int = 0o600, write: bool = True
    ) -> None:
        self.name = self.label = name
        try:
            self.queue = self._open(create, mode, write)
        except (posix_ipc.ExistentialError, posix_ipc.PermissionsError) as exc:
            raise _errors(name, exc) from None
        except OSError as exc:  # e.g. RLIMIT_MSGQUEUE or queues_max reached
            raise _open_error(name, exc, create) from None
        # Never block inside posix_ipc: a call that slept could end in its
        # SignalError on Ctrl-C. Waits poll the mqd (a real fd on Linux) instead.
        self.queue.block = False
        self.message_limit = self.queue.max_message_size

    def _open(self, create: bool, mode: int, write: bool) -> Any:
        defaults = limits()

        def open_queue(flags: int) -> Any:
            return posix_ipc.MessageQueue(
                self.name,
                flags,
                mode,
                max_messages=defaults["msg_default"],
                max_message_size=defaults["msgsize_default"],
                read=not write,
                write=write,
            )

        if not create:
            return open_queue(0)
        try:
            queue = open_queue(posix_ipc.O_CREX)
        except posix_ipc.ExistentialError:  # it exists already: use it as it is
            return open_queue(0)
        os.fchmod(queue.mqd, mode)  # mq_open applies the umask; --mode means exactly mode
        return queue

    def close(self) -> None:
        self.queue.close()

    def check_size(self, size: int) -> None:
        check_size(self.label, size, self.message_limit)

    def sending(self, priority: int, nowait: bool, timeout: float | None) -> PosixQueue:
        """This queue as send's Outlet: messages of this priority, waiting as asked."""
        self.priority, self.nowait, self.timeout = priority, nowait, timeout
        return self

    def put(self, data: bytes, _channel: int | None = None) -> None:
        self.put_many([data])

    def put_many(self, messages: list[bytes]) -> None:
        """put() for a batch, in one loop: the fast path is posix_ipc's own send."""
        send, priority = self.queue.send, self.priority
        for data in messages:
            try:
                send(data, None, priority)
            except posix_ipc.BusyError:
                if self.nowait:
                    raise WouldBlock(self.label, "queue is full") from None
                self._put_blocking(data)
            except ValueError:
                self.check_size(len(data))
                raise

    def _put_blocking(self, data: bytes) -> None:
        priority = self.priority
        when_ready(
            self.queue.mqd,
            select.POLLOUT,
            lambda: self.queue.send(data, None, priority),
            busy=posix_ipc.BusyError,
            timeout=self.timeout,
            obj=self.label,
        )

    def try_put(self, data: bytes, _channel: int | None = None) -> None:
        self.queue.send(data, None, self.priority)

    def take_all(self, _channel: int) -> None:
        pass  # no channels: every piece carries its stream's id instead

    def lock_for_stream(self, receiving: bool = False) -> None:
        """One stream at a time on a POSIX queue, and one stream receiver: pieces of
        two streams cannot be kept apart, and a second receiver would take pieces
        of the stream the first one writes. So a second sender (or receiver) waits,
        up to --timeout, until the first is done: a lock on the queue, released
        when the process ends, however it ends. Senders take a POSIX record lock
        (they can write), receivers an flock (they may only read): on Linux the
        two kinds never block each other."""
        import fcntl

        lock = fcntl.flock if receiving else fcntl.lockf
        role = "received from" if receiving else "sent to"

        def locked() -> bool | None:
            try:
                lock(self.queue.mqd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except (BlockingIOError, PermissionError):
                # lockf says EACCES or EAGAIN for a lock held by another process
                if self.nowait:
                    raise WouldBlock(self.label, f"another stream is being {role} it") from None
                return None  # neither lock can wait with a timeout: try again

        try:
            retry_until(locked, timeout=self.timeout, obj=self.label, interval=0.02)
        except Timeout as late:
            raise Timeout(self.label, f"{late.reason}: another stream is being {role} it") from None

    def receiving(
        self, _selector: int = 0, nowait: bool = False, timeout: float | None = None
    ) -> PosixQueue:
        """This queue as recv's Inbox (the kernel gives the highest priority first)."""
        self.nowait, self.timeout = nowait, timeout
        return self

    def poller(self, _channel: int | None = None) -> tuple[Any, type[BaseException]]:
        """posix_ipc's own non-blocking receive (the queue never blocks: see __init__)
        and what it raises on an empty queue."""
        return self.queue.receive, posix_ipc.BusyError

    def wait(self, _channel: int | None, timeout: float | None) -> tuple[bytes, int]:
        """Wait for a message on the mqd and take it; callers poll() first."""
        return when_ready(
            self.queue.mqd,
            select.POLLIN,
            self.queue.receive,
            busy=posix_ipc.BusyError,
            timeout=timeout,
            obj=self.label,
            watch_stdout=True,
        )

    def put_back(self, messages: list[tuple[bytes, int]]) -> None:
        """Messages recv took but could not write, sent again with their priorities
        through a descriptor opened for writing (recv's own reads only)."""
        writer = posix_ipc.MessageQueue(self.name, 0, read=False, write=True)
        try:
            for data, priority in messages:
                writer.send(data, 0, priority)  # room: recv took these out just now
        finally:
            writer.close()

    def recover(self, _exc: BaseException) -> bool:
        return False  # the buffer is mq_msgsize, which cannot change for an open queue

    def translate(self, exc: BaseException) -> BaseException:
        return _errors(self.label, exc) if isinstance(exc, posix_ipc.Error) else exc
