"""POSIX message queues through posix_ipc (imported only by the verbs that use them)."""

from __future__ import annotations

import os
import select
from typing import Any

import posix_ipc

from ipctool.api import (
    NotFound,
    PermissionDenied,
    WouldBlock,
    from_os_error,
    read_sysctl,
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
        except OSError as exc:  # e.g. EMFILE: RLIMIT_MSGQUEUE or queues_max reached
            raise from_os_error(name, exc) from None
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

    def put(self, data: bytes, priority: int, nowait: bool, timeout: float | None) -> None:
        try:
            self.queue.send(data, None, priority)  # the fast path: room in the queue
        except posix_ipc.BusyError:
            if nowait:
                raise WouldBlock(self.label, "queue is full") from None
            self._put_blocking(data, priority, timeout)
        except ValueError:
            self.check_size(len(data))
            raise

    def _put_blocking(self, data: bytes, priority: int, timeout: float | None) -> None:
        when_ready(
            self.queue.mqd,
            select.POLLOUT,
            lambda: self.queue.send(data, None, priority),
            busy=posix_ipc.BusyError,
            timeout=timeout,
            obj=self.label,
        )

    def poller(self, _selector: int = 0) -> tuple[Any, type[BaseException]]:
        """posix_ipc's own non-blocking receive and what it raises on an empty queue."""
        return self.queue.receive, posix_ipc.BusyError

    def translate(self, exc: BaseException) -> BaseException:
        return _errors(self.label, exc) if isinstance(exc, posix_ipc.Error) else exc

    def wait(self, _selector: int, nowait: bool, timeout: float | None) -> tuple[bytes, int]:
        """Block for a message; callers poll() first, so none is waiting now."""
        if nowait:
            raise WouldBlock(self.label, "no message")
        return when_ready(
            self.queue.mqd,
            select.POLLIN,
            self.queue.receive,
            busy=posix_ipc.BusyError,
            timeout=timeout,
            obj=self.label,
            watch_stdout=True,
        )
