"""recv's inbox: a bound UDP socket's datagrams, with their senders for --json, and
the datagrams the kernel dropped said on stderr.

A UDP socket keeps nothing for anyone once recv ends, and a sender never waits
for it: so recv writes into a pipe in batches without waiting for its reader
(`paced = False`, see ipctool.messages), and a datagram it took but could not
write is lost like one that comes after it ends. Drops are read from the
kernel's counter whenever recv is about to wait (the socket is idle then) and
at the end: each new count is one warning line.
"""

from __future__ import annotations

import socket
from typing import Any

from ipctool.api import IpcError, Message, SocketInbox, from_os_error, say
from ipctool_plugins.udp.endpoints import (
    RECEIVE_BUFFER,
    SEND_REASONS,
    address_of,
    dropped,
    receive_buffer,
)


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
        self.reported = 0  # drops already said

    def _receive_data(self) -> Message:
        """A datagram without its sender: no address to build for every datagram."""
        n = self.sock.recv_into(self.buffer)
        if n == len(self.buffer):
            raise IpcError(self.label, f"a datagram of more than {n - 1} bytes was cut short")
        return self.view[:n].tobytes(), None

    def wait(self, channel: int | None, timeout: float | None) -> Message:
        report_drops(self)
        return super().wait(channel, timeout)

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, OSError) and exc.errno in SEND_REASONS:
            return from_os_error(self.label, exc, SEND_REASONS[exc.errno or 0])
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
