"""Closing a UDP socket from outside: sock_diag's SOCK_DESTROY, as `ss -K` does.

The kernel finds the socket by the id its table gave (addresses, ports, bound
interface and cookie: exactly that socket, not another at the same address),
aborts it (the holder's next call fails with ECONNABORTED) and frees its port.
It needs root (CAP_NET_ADMIN) and a kernel built with CONFIG_INET_DIAG_DESTROY.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

from ipctool.inetdiag import ALL_STATES, MESSAGE_SIZE, TAIL
from ipctool.sockdiag import HEADER, NETLINK_SOCK_DIAG, NLMSG_ERROR, Unavailable, dump

SOCK_DESTROY = 21
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
REQUEST = struct.Struct("=BBBxI")  # inet_diag_req_v2 before its id: family, protocol, ext, states
SOCKID = slice(4, 52)  # inet_diag_msg's id: ports, addresses, interface, cookie


def socket_id(family: int, inode: int) -> bytes:
    """The table's id of the UDP socket with this inode (OSError ENOENT: gone)."""
    try:
        answers = dump(REQUEST.pack(family, socket.IPPROTO_UDP, 0, ALL_STATES) + bytes(48))
    except Unavailable as why:
        raise OSError(errno.EOPNOTSUPP, f"no socket table to find it in ({why})") from None
    for answer in answers:
        if len(answer) >= MESSAGE_SIZE and TAIL.unpack_from(answer, 52)[4] == inode:
            return answer[SOCKID]
    raise OSError(errno.ENOENT, "no such socket")


def destroy(family: int, inode: int) -> None:
    """Close the socket; OSError with the kernel's errno if it cannot be (EPERM: not
    root; EOPNOTSUPP: not in this kernel; ENOENT: closed meanwhile)."""
    request = REQUEST.pack(family, socket.IPPROTO_UDP, 0, ALL_STATES) + socket_id(family, inode)
    header = HEADER.pack(HEADER.size + len(request), SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
    with socket.socket(socket.AF_NETLINK, kind, NETLINK_SOCK_DIAG) as netlink:
        netlink.sendall(header + request)
        answer = netlink.recv(1 << 16)
    if len(answer) >= HEADER.size + 4 and HEADER.unpack_from(answer)[1] == NLMSG_ERROR:
        (code,) = struct.unpack_from("=i", answer, HEADER.size)
        if code:
            raise OSError(-code, os.strerror(-code))
