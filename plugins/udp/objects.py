"""UDP sockets for the core's inspect and clean.

Listed: every UDP socket (IPv4 and IPv6) of this network namespace, from the
kernel's table (inet_diag over sock_diag, as `ss -u`; /proc/net/udp and udp6
where it cannot be used): its local address (the target), the peer of a
connected one, the interface it is bound to, the bytes queued to be read and
to be sent (the kernel's accounting: each datagram counts with its overhead),
the receive buffer, the datagrams the kernel dropped for want of room in it,
and the processes holding it (from /proc).

A UDP socket lives exactly as long as a process holds it open: none is ever
stale, and clean --stale says so and removes nothing. `clean HOST:PORT` of a
socket refuses (it is in use, exit 6) unless --force, which closes it from
outside as `ss -K` does (sock_diag's SOCK_DESTROY: root, or CAP_NET_ADMIN):
the process's next call on it fails, and its port is free.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from typing import Any

from ipctool.api import (
    InetSock,
    IpcObject,
    NotFound,
    ObjectSource,
    ProcView,
    UsageError,
    inet_table,
    parse_host_port,
    read_sysctl,
    resolve_addresses,
)
from ipctool_plugins.udp.endpoints import address_of

INODE_PREFIX, INODE_SUFFIX = "socket:[", "]"
KINDS: dict[int, str] = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}


class UdpSource(ObjectSource):
    mechanism = "udp"
    noun = "socket"
    target_metavar = "HOST:PORT|:PORT|socket:[INODE]"
    target_help = (
        "A socket's local address (HOST:PORT, [IPv6]:PORT), socket:[INODE], or :PORT "
        "(inspect: every socket on that port, whatever its address)."
    )
    example_target = "127.0.0.1:5000"
    stale_rule = "never: a UDP socket lives exactly as long as the process holding it"
    never_stale = (
        "a UDP socket lives exactly as long as a process holds it, so none is stale; "
        "`udp clean HOST:PORT --force` closes one (as ss -K)"
    )
    columns = (
        ("target", "target"),
        ("kind", "kind"),
        ("state", "state"),
        ("peer", "peer"),
        ("processes", "processes"),
        ("queued", "size"),
        ("buffer", "capacity"),
        ("drops", "drops"),
    )

    def __init__(self) -> None:
        self._table: Any = None

    @property
    def table(self) -> list[InetSock]:
        if self._table is None:
            self._table = inet_table(socket.IPPROTO_UDP)
        return list(self._table.sockets)

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        view = View(proc, self.table)
        found = self.table
        if scope is not None:
            port = port_of_scope(scope)
            found = [s for s in found if s.local[1] == port]
        return [view.socket_object(s) for s in found]

    def is_scope(self, target: str) -> bool:
        """:PORT: every socket on the port, whatever its address."""
        return target.startswith(":") and target[1:].isdigit()

    def find(self, target: str, proc: ProcView) -> IpcObject:
        """By inode, or by local address (several there: the bound, unconnected
        one first, as a receiver is)."""
        view = View(proc, self.table)
        if target.startswith(INODE_PREFIX) and target.endswith(INODE_SUFFIX):
            inode = inode_of(target)
            found = [s for s in self.table if s.inode == inode]
        else:
            address = local_address(target)
            found = [s for s in self.table if same_address(s.local, address)]
        if not found:
            raise NotFound(target, "no UDP socket is bound to it")
        found.sort(key=lambda s: s.connected)
        return view.socket_object(found[0])

    def remove(self, obj: IpcObject) -> None:
        """Close the socket from outside (the core's SOCK_DESTROY, as tcp's clean)."""
        from ipctool.api import destroy_inet_socket, naming

        inode = int(obj.id or 0)
        with naming(obj.target, reasons=DESTROY_REASONS):
            found = [s for s in inet_table(socket.IPPROTO_UDP).sockets if s.inode == inode]
            if not found:
                raise OSError(errno.ENOENT, "no such socket")
            destroy_inet_socket(socket.IPPROTO_UDP, found[0])

    def unremovable(self, obj: IpcObject) -> str:
        return (
            "only root (CAP_NET_ADMIN) closes a socket from outside; "
            "end the process that holds it instead"
        )

    def limits(self) -> dict[str, Any]:
        def sysctl(name: str, default: int) -> int:
            return read_sysctl(f"/proc/sys/net/{name}", default)

        low, high = ephemeral_ports()
        return {
            "rmem_default": sysctl("core/rmem_default", 212992),
            "rmem_max": sysctl("core/rmem_max", 212992),
            "wmem_default": sysctl("core/wmem_default", 212992),
            "wmem_max": sysctl("core/wmem_max", 212992),
            "largest_datagram_ipv4": 65507,
            "largest_datagram_ipv6": 65527,
            "ephemeral_ports": f"{low}-{high}",
        }

    def notes(self) -> list[str]:
        if self._table is not None and not self._table.detailed:
            return [
                "sock_diag is not available here: from /proc/net/udp and udp6, "
                "without receive buffer sizes; clean --force cannot close a socket"
            ]
        return []

    def describe(self, obj: IpcObject) -> str:
        return f"{obj.kind} socket {obj.target} (inode {obj.id})"


DESTROY_REASONS = {
    errno.EOPNOTSUPP: "this kernel cannot close a socket from outside "
    "(CONFIG_INET_DIAG_DESTROY), or has no socket table here",
    errno.ENOENT: "the socket was closed meanwhile",
}


def ephemeral_ports() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_of_scope(scope: str) -> int:
    return int(scope[1:])


def inode_of(target: str) -> int:
    digits = target[len(INODE_PREFIX) : -len(INODE_SUFFIX)]
    if not digits.isdigit():
        raise UsageError(target, "socket:[INODE] takes a number")
    return int(digits)


def local_address(target: str) -> tuple[str, int]:
    """A target's address as the kernel's table writes it (numeric, unscoped)."""
    parsed = parse_host_port(target, protocol="udp", listening=True)
    _, sockaddr = resolve_addresses(parsed, socket.SOCK_DGRAM, passive=True)[0]
    return sockaddr[0].partition("%")[0], sockaddr[1]


def same_address(local: tuple[str, int], wanted: tuple[str, int]) -> bool:
    import ipaddress

    return local[1] == wanted[1] and ipaddress.ip_address(local[0]) == ipaddress.ip_address(
        wanted[0]
    )


def state_of(sock: InetSock) -> str:
    return "connected" if sock.connected else "bound"


class View:
    """/proc, answering for one command: which processes hold which socket."""

    def __init__(self, proc: ProcView, table: list[InetSock]) -> None:
        self.proc = proc
        self._holders: dict[int, list[int]] | None = None
        self.shared: set[tuple[str, int]] = set()  # addresses more than one socket holds
        seen: set[tuple[str, int]] = set()
        for sock in table:
            (self.shared if sock.local in seen else seen).add(sock.local)

    def pids(self, inode: int) -> list[int]:
        if self._holders is None:
            self._holders = {}
            for (_, ino), holders in self.proc.open_files_of_type(stat.S_IFSOCK).items():
                self._holders[ino] = sorted({h.pid for h in holders})
        return self._holders.get(inode, [])

    def socket_object(self, sock: InetSock) -> IpcObject:
        users = self.pids(sock.inode)
        return IpcObject(
            "udp",
            KINDS.get(sock.family, str(sock.family)),
            self.target(sock),
            id=sock.inode,
            uid=sock.uid,
            size=sock.rqueue,
            capacity=sock.meminfo[1] if sock.meminfo and any(sock.meminfo) else None,
            users=users,
            busy=None if users else "held by a process not visible here",
            removable=os.geteuid() == 0,
            extra=self.facts(sock, users),
        )

    def target(self, sock: InetSock) -> str:
        """A socket by its local address, or by inode where several share that
        address (a group's receivers, with SO_REUSEADDR)."""
        if sock.local in self.shared:
            return f"{INODE_PREFIX}{sock.inode}{INODE_SUFFIX}"
        return address_of(sock.local)

    def facts(self, sock: InetSock, users: list[int]) -> dict[str, Any]:
        return {
            "address": address_of(sock.local),
            "port": sock.local[1],
            "state": state_of(sock),
            "peer": address_of(sock.peer) if sock.connected else None,
            "processes": [{"pid": pid, "command": self.proc.command(pid)} for pid in users],
            "socket_inode": sock.inode,
            "send_queued": sock.wqueue,
            "drops": sock.meminfo[8] if sock.meminfo and len(sock.meminfo) > 8 else None,
        }
