"""The kernel's table of TCP or UDP sockets, IPv4 and IPv6: inet_diag over
sock_diag (what `ss -t`, `ss -u` read), or /proc/net/{tcp,udp}{,6}.

For every socket of this network namespace: its family, state, local and
peer address, the bytes queued to be read and those waiting to be sent (for
a listener: the connections waiting to be accepted, and its backlog), its
owner, its inode (0 for a socket no process holds any more: one the kernel
is closing, TIME-WAIT...) and, from sock_diag only, for TCP how long since
data last moved (tcp_info) and the socket's memory counters (drops for UDP).
Which process holds a socket is /proc's to say (ipctool.procfs), by inode.
Imported by inspect and clean only.
"""

from __future__ import annotations

import socket
import struct

# sk_state values (include/net/tcp_states.h) and the names ss gives them
STATES = {
    1: "ESTAB",
    2: "SYN-SENT",
    3: "SYN-RECV",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "CLOSE",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN-RECV",  # TCP_NEW_SYN_RECV: a request a listener is answering
}
ESTABLISHED, TIME_WAIT, CLOSE, CLOSE_WAIT, LISTEN = 1, 6, 7, 8, 10
ALL_STATES = 0xFFFFFFFF
REQUEST = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family, protocol, ext, states, id
MESSAGE_SIZE = 72  # inet_diag_msg: 4 bytes, the 48-byte id, then five u32
TAIL = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode
INFO, SKMEMINFO = 2, 7  # attributes asked for with idiag_ext bits 1 << (n - 1)
# struct tcp_info: 8 bytes of u8 fields, then u32s; these two are ms since data last
# left (tcpi_last_data_sent) and came (tcpi_last_data_recv).
LAST_DATA_SENT, LAST_DATA_RECV = 44, 52
PROC_FILES = {
    socket.IPPROTO_TCP: (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)),
    socket.IPPROTO_UDP: (("/proc/net/udp", socket.AF_INET), ("/proc/net/udp6", socket.AF_INET6)),
}


class InetSock:
    """One TCP or UDP socket as the kernel's table shows it (None: not known here)."""

    __slots__ = (
        "family",
        "idle",
        "inode",
        "local",
        "meminfo",
        "peer",
        "rqueue",
        "state",
        "uid",
        "wqueue",
    )

    def __init__(
        self,
        family: int,
        state: int,
        local: tuple[str, int],
        peer: tuple[str, int],
        *,
        rqueue: int = 0,
        wqueue: int = 0,
        uid: int | None = None,
        inode: int = 0,
    ) -> None:
        self.family = family
        self.state = state
        self.local = local  # (address text, port)
        self.peer = peer  # ("0.0.0.0" or "::", 0) when not connected
        self.rqueue = rqueue
        self.wqueue = wqueue
        self.uid = uid
        self.inode = inode
        self.idle: float | None = None  # TCP: seconds since data last moved either way
        self.meminfo: tuple[int, ...] | None = None  # SK_MEMINFO_*; [8] is drops

    @property
    def state_name(self) -> str:
        return STATES.get(self.state, str(self.state))

    @property
    def listening(self) -> bool:
        return self.state == LISTEN

    @property
    def connected(self) -> bool:
        return self.peer[1] != 0

    def __repr__(self) -> str:
        return f"InetSock({self.local}, {self.peer}, {self.state_name}, inode={self.inode})"


class Table:
    """Every socket of one protocol in this network namespace, and where it came from."""

    def __init__(self, sockets: list[InetSock], source: str) -> None:
        self.sockets = sockets
        self.source = source  # "sock_diag" or "/proc/net/tcp"...

    @property
    def detailed(self) -> bool:
        return self.source == "sock_diag"


def table(protocol: int) -> Table:
    """socket.IPPROTO_TCP or IPPROTO_UDP: from sock_diag, else from /proc."""
    from ipctool.sockdiag import Unavailable

    try:
        return Table(from_sock_diag(protocol), "sock_diag")
    except Unavailable:
        return Table(from_proc(protocol), PROC_FILES[protocol][0][0])


def from_sock_diag(protocol: int) -> list[InetSock]:
    from ipctool.sockdiag import attributes, dump

    extensions = 1 << (SKMEMINFO - 1)
    if protocol == socket.IPPROTO_TCP:
        extensions |= 1 << (INFO - 1)
    found = []
    for family in (socket.AF_INET, socket.AF_INET6):
        for answer in dump(REQUEST.pack(family, protocol, extensions, ALL_STATES)):
            if len(answer) < MESSAGE_SIZE:
                continue
            sock = _from_message(answer)
            _fill(sock, attributes(answer, MESSAGE_SIZE))
            found.append(sock)
    return found


def _from_message(answer: bytes) -> InetSock:
    family, state = answer[0], answer[1]
    local_port, peer_port = struct.unpack_from("!HH", answer, 4)
    size = 4 if family == socket.AF_INET else 16
    local = socket.inet_ntop(family, answer[8 : 8 + size])
    peer = socket.inet_ntop(family, answer[24 : 24 + size])
    _, rqueue, wqueue, uid, inode = TAIL.unpack_from(answer, 52)
    return InetSock(
        family,
        state,
        (local, local_port),
        (peer, peer_port),
        rqueue=rqueue,
        wqueue=wqueue,
        uid=uid,
        inode=inode,
    )


def _fill(sock: InetSock, attrs: dict[int, bytes]) -> None:
    info = attrs.get(INFO)
    if info is not None and len(info) >= LAST_DATA_RECV + 4 and not sock.listening:
        (sent,) = struct.unpack_from("=I", info, LAST_DATA_SENT)
        (received,) = struct.unpack_from("=I", info, LAST_DATA_RECV)
        sock.idle = min(sent, received) / 1000
    memory = attrs.get(SKMEMINFO)
    if memory is not None:
        sock.meminfo = struct.unpack(f"={len(memory) // 4}I", memory[: len(memory) // 4 * 4])


def from_proc(protocol: int, files: tuple[tuple[str, int], ...] | None = None) -> list[InetSock]:
    """The fallback: "sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout
    inode ..." lines (a UDP line ends with its drops)."""
    found = []
    for path, family in files or PROC_FILES[protocol]:
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            tx, _, rx = fields[4].partition(":")
            sock = InetSock(
                family,
                int(fields[3], 16),
                proc_address(fields[1], family),
                proc_address(fields[2], family),
                rqueue=int(rx, 16),
                wqueue=int(tx, 16),
                uid=int(fields[7]),
                inode=int(fields[9]),
            )
            if protocol == socket.IPPROTO_UDP and len(fields) >= 13:
                sock.meminfo = (0,) * 8 + (int(fields[-1]),)
            found.append(sock)
    return found


def proc_address(field: str, family: int) -> tuple[str, int]:
    """An address as /proc writes it, "0100007F:1F90" -> ("127.0.0.1", 8080): each
    32-bit word printed as the kernel holds it, in the machine's byte order."""
    address, _, port = field.partition(":")
    words = [int(address[i : i + 8], 16) for i in range(0, len(address), 8)]
    raw = struct.pack(f"={len(words)}I", *words)
    return socket.inet_ntop(family, raw), int(port, 16)
