"""The kernel's table of unix sockets: unix_diag over sock_diag, or /proc/net/unix.

unix_diag (what `ss -x` reads) tells, for every unix socket of this network
namespace: its type and state, the name it is bound to, the file that name
is (device and inode), its peer's socket, the connections a listener has not
accepted yet, the bytes queued to be read and those sent but not yet read by
the peer, and its owner. /proc/net/unix, the fallback where sock_diag cannot
be used, has no peers, queues, owners or files (a path is matched by name).
"""

from __future__ import annotations

import os
import struct

# unix_diag_req's show flags, and the attributes they bring (linux/unix_diag.h)
SHOW_NAME, SHOW_VFS, SHOW_PEER, SHOW_ICONS, SHOW_RQLEN, SHOW_UID = 0x1, 0x2, 0x4, 0x8, 0x10, 0x40
NAME, VFS, PEER, ICONS, RQLEN, UID = 0, 1, 2, 3, 4, 7
REQUEST = struct.Struct("=BBHIIIII")  # family, protocol, pad, states, inode, show, cookie
MESSAGE = struct.Struct("=BBBxIII")  # family, type, state, pad, inode, cookie
ALL_STATES = 0xFFFFFFFF
# sk_state values a unix socket takes (the kernel reuses TCP's numbers)
ESTABLISHED, CLOSE, LISTEN = 1, 7, 10
ACCEPTING = 0x10000  # /proc/net/unix Flags: __SO_ACCEPTCON, a listener
PROC_STATES = {1: CLOSE, 2: CLOSE, 3: ESTABLISHED, 4: CLOSE}  # SS_UNCONNECTED.. DISCONNECTING


class UnixSock:
    """One unix socket as the kernel's table shows it (None: not known here)."""

    __slots__ = (
        "file",
        "inode",
        "kind",
        "name",
        "peer",
        "pending",
        "rqueue",
        "state",
        "uid",
        "wqueue",
    )

    def __init__(self, inode: int, kind: int, state: int, name: str | None = None) -> None:
        self.inode = inode
        self.kind = kind  # socket.SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
        self.state = state
        self.name = name  # the bound path as given to bind, "@name", or None
        self.file: tuple[int, int] | None = None  # (st_dev, st_ino) of a path's socket file
        self.peer: int | None = None
        self.pending: list[int] | None = None  # a listener's connections not yet accepted
        self.rqueue: int | None = None
        self.wqueue: int | None = None
        self.uid: int | None = None

    @property
    def listening(self) -> bool:
        return self.state == LISTEN

    def __repr__(self) -> str:
        return f"UnixSock({self.inode}, {self.name!r}, state={self.state})"


class Table:
    """Every unix socket of this network namespace, and where the facts came from."""

    def __init__(self, sockets: list[UnixSock], source: str) -> None:
        self.sockets = sockets
        self.source = source  # "sock_diag" or "/proc/net/unix"
        self.by_inode = {s.inode: s for s in sockets}

    @property
    def detailed(self) -> bool:
        return self.source == "sock_diag"

    def bound_to_file(self, device: int, inode: int) -> list[UnixSock]:
        """Sockets whose name is this socket file: its bound socket (a listener)
        and, for a listener, the connections it accepted (they share its name)."""
        return [s for s in self.sockets if s.file == (device, inode)]

    def named(self, name: str) -> list[UnixSock]:
        return [s for s in self.sockets if s.name == name]


def binds(sock: UnixSock) -> bool:
    """Whether the socket holds its name: not a connection a listener accepted
    (which carries the listener's name, and needs no file once accepted)."""
    import socket

    return sock.kind == socket.SOCK_DGRAM or sock.state != ESTABLISHED


def table() -> Table:
    from ipctool.sockdiag import Unavailable

    try:
        return Table(from_sock_diag(), "sock_diag")
    except Unavailable:
        return Table(from_proc(), "/proc/net/unix")


def from_sock_diag() -> list[UnixSock]:
    import socket

    from ipctool.sockdiag import attributes, dump

    show = SHOW_NAME | SHOW_VFS | SHOW_PEER | SHOW_ICONS | SHOW_RQLEN | SHOW_UID
    request = REQUEST.pack(socket.AF_UNIX, 0, 0, ALL_STATES, 0, show, ALL_STATES, ALL_STATES)
    found = []
    for answer in dump(request):
        _, kind, state, inode, _, _ = MESSAGE.unpack_from(answer)
        sock = UnixSock(inode, kind, state)
        _fill(sock, attributes(answer, MESSAGE.size))
        found.append(sock)
    return found


def _fill(sock: UnixSock, attrs: dict[int, bytes]) -> None:
    if NAME in attrs:
        sock.name = name_of(attrs[NAME])
    if VFS in attrs:
        inode, device = struct.unpack_from("=II", attrs[VFS])
        sock.file = (os.makedev(device >> 20, device & 0xFFFFF), inode)  # the kernel's dev_t
    if PEER in attrs:
        (sock.peer,) = struct.unpack_from("=I", attrs[PEER])
    if ICONS in attrs:
        raw = attrs[ICONS]
        sock.pending = list(struct.unpack(f"={len(raw) // 4}I", raw))
    if RQLEN in attrs:
        sock.rqueue, sock.wqueue = struct.unpack_from("=II", attrs[RQLEN])
    if UID in attrs:
        (sock.uid,) = struct.unpack_from("=I", attrs[UID])


def name_of(raw: bytes) -> str | None:
    """A bound name as ipctool writes it: the path, or @name (abstract)."""
    if not raw:
        return None
    if raw[0] == 0:
        return "@" + os.fsdecode(raw[1:])
    return os.fsdecode(raw.split(b"\0", 1)[0])


def from_proc(path: str = "/proc/net/unix") -> list[UnixSock]:
    """The fallback: "Num RefCount Protocol Flags Type St Inode [Path]" lines."""
    found = []
    with open(path, "rb") as f:
        next(f)
        for line in f:
            fields = line.split(maxsplit=7)
            if len(fields) < 7 or fields[6] == b"0":  # inode 0: a connection not accepted yet
                continue
            flags, kind, state = int(fields[3], 16), int(fields[4], 16), int(fields[5], 16)
            sock_state = LISTEN if flags & ACCEPTING else PROC_STATES.get(state, CLOSE)
            name = os.fsdecode(fields[7].rstrip(b"\n")) if len(fields) > 7 else None
            found.append(UnixSock(int(fields[6]), kind, sock_state, name or None))
    return found
