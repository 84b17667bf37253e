"""Datagrams in and out of a UDP socket, for the core's message loops.

- `DatagramOutlet`: send's outlet. With the C batches (_batch.c) a batch of
  datagrams is a few sendmmsg calls; without them, the core's loop of sends.
- `DatagramInbox`: recv's inbox (and --reply's). With the C batches, and no
  --json, up to 64 datagrams a recvmmsg call (recv is the end that must keep
  up with a sender on this host, or lose datagrams); with --json each
  datagram's sender comes from recvfrom.

A UDP socket keeps nothing for anyone once recv ends, and a sender never waits
for it: so recv writes into a pipe in batches without waiting for its reader
(`paced = False`, see ipctool.messages), and a datagram it took but could not
write is lost like one that comes after it ends. Drops are read from the
kernel's counter whenever recv is about to wait (the socket is idle then) and
at the end: each new count is one warning line.

The C batches are optional: not built where ipctool was installed without a
compiler, and left unused when IPCTOOL_NO_NATIVE is set.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from types import ModuleType
from typing import Any

from ipctool.api import IpcError, Message, SocketInbox, SocketOutlet, from_os_error, say
from ipctool_plugins.udp.endpoints import (
    RECEIVE_BUFFER,
    SEND_REASONS,
    address_of,
    dropped,
    receive_buffer,
)


def _load_batch() -> ModuleType | None:
    if os.environ.get("IPCTOOL_NO_NATIVE", "") not in ("", "0"):
        return None
    try:
        from ipctool_plugins.udp import _batch
    except ImportError:
        return None
    return _batch


_batch = _load_batch()
DROPS_EVERY = 0.1  # seconds between two looks at the drop counter while recv waits


class DatagramOutlet(SocketOutlet):
    """SocketOutlet with sendmmsg batches on a connected socket."""

    def __init__(self, sock: socket.socket, label: str, **options: Any) -> None:
        super().__init__(sock, label, **options)
        self.batched = _batch is not None and options.get("address") is None

    def put_many(self, messages: list[bytes]) -> None:
        if not self.batched:
            super().put_many(messages)
            return
        assert _batch is not None
        fd = self.sock.fileno()
        while messages:
            sent, code = _batch.send_many(fd, messages)
            if not code:
                return
            messages = messages[sent:]
            if code != errno.EAGAIN:
                with self.errors():
                    raise OSError(code, os.strerror(code))
            with self.errors():
                self._put_waiting(messages[0])  # no room now: wait for it, then send
            messages = messages[1:]

    def errors(self) -> Any:
        from ipctool.api import socket_errors

        return socket_errors(self.label, self.reasons)


def sender_of(address: Any) -> dict[str, Any]:
    """A datagram's sender as --json shows it: address, host, port."""
    text = address_of(address)
    host = text.rpartition(":")[0].strip("[]")
    return {"address": text, "host": host, "port": address[1]}


class DatagramInbox(SocketInbox):
    paced = False

    def __init__(self, sock: socket.socket, label: str, *, senders: bool = False) -> None:
        super().__init__(sock, label, bufsize=RECEIVE_BUFFER, sender=sender_of)
        if not senders:
            self.receive = self._receive_data
            if _batch is not None:
                self.take_many = self._take_many
        self.pending: BaseException | None = None  # a batch's failure, for the next call
        self.reported = 0  # drops already said
        self.next_look = 0.0  # when wait() next reads the drop counter

    def _receive_data(self) -> Message:
        """A datagram without its sender: no address to build for every datagram."""
        n = self.sock.recv_into(self.buffer)
        if n == len(self.buffer):
            raise self.cut_short()
        return self.view[:n].tobytes(), None

    def _take_many(self, most: int) -> list[Message]:
        """Up to `most` waiting datagrams ([] if none waits); a failure after some
        were taken is raised by the next call, as the core's loop asks."""
        if self.pending is not None:
            failure, self.pending = self.pending, None
            raise failure
        assert _batch is not None
        batch, code = _batch.receive_many(self.sock.fileno(), most)
        if code and code != errno.EAGAIN:
            failure = self.cut_short() if code == errno.EMSGSIZE else OSError(code, "")
            if not batch:
                raise failure
            self.pending = failure
        return batch

    def cut_short(self) -> IpcError:
        return IpcError(self.label, f"a datagram of more than {RECEIVE_BUFFER - 1} bytes was cut")

    def wait(self, channel: int | None, timeout: float | None) -> Message:
        now = time.monotonic()
        if now >= self.next_look:  # at most ten times a second: a busy recv waits often
            self.next_look = now + DROPS_EVERY
            report_drops(self)
        return super().wait(channel, timeout)

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, OSError) and exc.errno in SEND_REASONS:
            return from_os_error(self.label, exc, SEND_REASONS[exc.errno or 0])
        if isinstance(exc, OSError) and not exc.strerror:
            exc = OSError(exc.errno, os.strerror(exc.errno or 0))
        return super().translate(exc)


def report_drops(inbox: DatagramInbox) -> None:
    """A warning line when the kernel dropped datagrams since the last one said."""
    count = dropped(inbox.sock)
    if not count or count <= inbox.reported:
        return
    new, inbox.reported = count - inbox.reported, count
    size = receive_buffer(inbox.sock)
    say(
        IpcError(
            inbox.label,
            f"warning: the kernel dropped {new} datagram{'s' * (new != 1)}"
            f"{' more' if new != count else ''}: the receive buffer ({size >> 10} KiB) "
            "was full (a reader too slow for its sender)",
        ).line("udp")
    )
