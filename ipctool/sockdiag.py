"""sock_diag: the kernel's table of sockets over netlink (what `ss` reads).

One dump request per family (AF_UNIX for unix_diag; AF_INET and AF_INET6 for
inet_diag, tcp and udp); each answer is the family's fixed struct followed by
attributes (length, type, payload). What the struct and the attributes mean
is the mechanism's; this module only asks and splits. It sees the sockets of
ipctool's own network namespace. Imported by inspect and clean only.
"""

from __future__ import annotations

import socket
import struct

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port
ATTRIBUTE = struct.Struct("=HH")  # rtattr: length, type
RECEIVE_SIZE = 1 << 16


class Unavailable(Exception):
    """The kernel gives no such table here (no sock_diag, a diag module not loaded,
    or not allowed); the mechanism falls back to what /proc shows."""


def dump(request: bytes) -> list[bytes]:
    """Every answer (the payload after the netlink header) to a dump request (the
    family's *_diag_req struct)."""
    try:
        sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
        )
    except OSError as err:
        raise Unavailable(err.strerror or str(err)) from None
    with sock:
        header = HEADER.pack(
            HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
        )
        try:
            sock.sendall(header + request)
            return _answers(sock)
        except OSError as err:
            raise Unavailable(err.strerror or str(err)) from None


def _answers(sock: socket.socket) -> list[bytes]:
    found: list[bytes] = []
    while True:
        data = sock.recv(RECEIVE_SIZE)
        offset = 0
        while offset + HEADER.size <= len(data):
            length, kind, _, _, _ = HEADER.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + HEADER.size)
                raise Unavailable(f"the kernel answered error {-code}")
            found.append(data[offset + HEADER.size : offset + length])
            offset += _aligned(length)
        if not data:
            return found


def attributes(payload: bytes, offset: int) -> dict[int, bytes]:
    """The attributes after a struct of `offset` bytes: type -> payload."""
    found = {}
    while offset + ATTRIBUTE.size <= len(payload):
        length, kind = ATTRIBUTE.unpack_from(payload, offset)
        if length < ATTRIBUTE.size:
            break
        found[kind] = payload[offset + ATTRIBUTE.size : offset + length]
        offset += _aligned(length)
    return found


def _aligned(length: int) -> int:
    return (length + 3) & ~3
