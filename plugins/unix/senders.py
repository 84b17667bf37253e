"""Who sent a message, for `recv --json`: its address, and its pid, uid and gid.

A datagram's sender is told by the kernel with each datagram once the
receiving socket asks for credentials (SO_PASSCRED: SCM_CREDENTIALS comes
with every datagram, from bound and unbound senders alike, as `logger` is);
a connection's peer is the same for all its records (SO_PEERCRED, the
credentials it had when it connected). An unbound sender has no address (null).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from ipctool.api import IpcError, SocketInbox

CREDENTIALS = struct.Struct("=iII")  # struct ucred: pid, uid, gid


def address_text(address: Any) -> str | None:
    """A unix address as ipctool writes it: the path, @name (abstract), or None."""
    if not address:
        return None
    if isinstance(address, bytes):
        if address[0] == 0:
            return "@" + os.fsdecode(address[1:])
        return os.fsdecode(address)
    return str(address)


def sender(address: Any, credentials: bytes | None) -> dict[str, Any]:
    pid = uid = gid = None
    if credentials is not None and len(credentials) >= CREDENTIALS.size:
        pid, uid, gid = CREDENTIALS.unpack_from(credentials)
    return {"address": address_text(address), "pid": pid, "uid": uid, "gid": gid}


def peer_of(conn: socket.socket, address: Any) -> dict[str, Any]:
    """A connection's peer: the address it connected from (usually none) and its
    credentials at connect time."""
    try:
        credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CREDENTIALS.size)
    except OSError:
        credentials = None
    return sender(address, credentials)


class CredentialsInbox(SocketInbox):
    """A datagram socket's inbox whose meta is each datagram's sender, credentials
    included (recvmsg with SCM_CREDENTIALS, into the reused buffer)."""

    def __init__(self, sock: socket.socket, label: str, *, bufsize: int) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        super().__init__(sock, label, bufsize=bufsize)
        self.room = socket.CMSG_SPACE(CREDENTIALS.size)

    def _receive(self) -> tuple[bytes, Any]:
        n, ancillary, _, address = self.sock.recvmsg_into([self.buffer], self.room)
        if n == len(self.buffer):
            raise IpcError(self.label, f"a message of more than {n - 1} bytes was cut short")
        credentials = next(
            (
                data
                for level, kind, data in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
            ),
            None,
        )
        return self.view[:n].tobytes(), sender(address, credentials)
