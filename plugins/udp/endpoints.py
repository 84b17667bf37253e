"""UDP sockets as send and recv set them up: destinations, bound receivers, groups.

- `destination(text)`: where send goes: HOST:PORT, [IPv6]:PORT or :PORT
  (loopback), never port 0 nor 0.0.0.0/:: (every local address, no host).
- `sender(...)`: a socket for it: --broadcast (SO_BROADCAST), --interface (the
  group's outgoing interface, IP_MULTICAST_IF; else SO_BINDTODEVICE), and
  connected to a unicast destination, so that a host's "port unreachable"
  comes back as an error and --reply takes answers from it alone.
- `receiver(...)`: a bound socket: port 0 picks a free port; a group
  (--group, or a multicast target) is joined on --interface or where the
  routing table says; the receive buffer is raised to net.core.rmem_max,
  so that a fast sender on this host loses nothing the kernel could keep.
- `dropped(sock)`: datagrams the kernel dropped for want of room in the
  socket's buffer (sk_drops, the counter SO_RXQ_OVFL tells with each datagram;
  read here with SO_MEMINFO, at no cost per datagram).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

from ipctool.api import (
    HostPort,
    NotFound,
    UsageError,
    address_text,
    new_socket,
    parse_host_port,
    read_sysctl,
    resolve_addresses,
    socket_errors,
)

# The largest UDP payload: 65535 less the UDP header (8), and for IPv4 its header (20).
LARGEST: dict[int, int] = {socket.AF_INET: 65507, socket.AF_INET6: 65527}
RECEIVE_BUFFER = 1 << 16  # every datagram fits, and one more byte says none was cut
SO_MEMINFO, SK_MEMINFO_DROPS = 55, 8  # getsockopt: u32 sk_meminfo[9]; the 9th is drops
IP_MULTICAST_ALL, IPV6_MULTICAST_ALL = 49, 29  # linux/in.h, linux/in6.h
MREQN = struct.Struct("=4s4si")  # struct ip_mreqn: group, local address, interface index
MREQ6 = struct.Struct("=16sI")  # struct ipv6_mreq: group, interface index
LINK_SCOPE = 2  # an IPv6 group's scope (its second nibble): 1 this host, 2 one link
SEND_REASONS = {
    errno.ECONNREFUSED: "nothing receives on this port (the host answered: port unreachable)",
    errno.EACCES: "permission denied (to send to a broadcast address, add --broadcast)",
    errno.EMSGSIZE: "datagram too long for the route (its MTU) or the socket",
    errno.ENETUNREACH: "network is unreachable (no route to it)",
}


class Endpoint:
    """A resolved address: `label` (as given, for error lines), family, sockaddr."""

    __slots__ = ("family", "label", "sockaddr", "target")

    def __init__(self, target: HostPort, family: int, sockaddr: Any) -> None:
        self.target = target
        self.label = target.text
        self.family = family
        self.sockaddr = sockaddr

    @property
    def multicast(self) -> bool:
        return ip_of(self.sockaddr).is_multicast

    @property
    def largest(self) -> int:
        return LARGEST[self.family]


def destination(text: str, timeout: float | None) -> Endpoint:
    """send's target; a name with several addresses is sent to at its first (a
    datagram cannot tell whether anyone is there to try the next)."""
    target = parse_host_port(text, protocol="udp", listening=False)
    family, sockaddr = resolve_addresses(target, socket.SOCK_DGRAM, timeout=timeout)[0]
    return Endpoint(target, family, sockaddr)


def ip_of(sockaddr: Any) -> Any:
    import ipaddress

    return ipaddress.ip_address(sockaddr[0].partition("%")[0])


def address_of(sockaddr: Any) -> str:
    """An address as ipctool writes it (address_text), an IPv4 peer of a dual-stack
    socket (::ffff:a.b.c.d) as the IPv4 address it is, a scoped one with %IFACE."""
    host = sockaddr[0]
    if host.startswith("::ffff:") and "." in host:
        return address_text((host[7:], sockaddr[1]))
    if len(sockaddr) > 3 and sockaddr[3] and "%" not in host:
        return address_text((f"{host}%{interface_name(sockaddr[3])}", sockaddr[1]))
    return address_text(sockaddr)


def interface_name(index: int) -> str:
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


def interface_index(name: str) -> int:
    """An interface's index by name (or by number); NotFound if there is none."""
    if name.isdigit():
        return int(name)
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise NotFound(name, "no such network interface") from None


def sender(
    where: Endpoint, *, broadcast: bool, interface: str | None, connect: bool
) -> socket.socket:
    """A socket for send, connected to `where` unless `connect` is false (a group or
    broadcast address whose answers come from other addresses)."""
    sock = new_socket(where.family, socket.SOCK_DGRAM)
    try:
        with socket_errors(where.label, SEND_REASONS):
            if broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            if interface is not None:
                use_interface(sock, where, interface)
            if connect:
                sock.connect(where.sockaddr)  # a datagram socket's connect never waits
    except BaseException:
        sock.close()
        raise
    return sock


def use_interface(sock: socket.socket, where: Endpoint, interface: str) -> None:
    """A group's datagrams go out on the interface; any other's only through it."""
    index = interface_index(interface)
    if not where.multicast:
        bind_to_device(sock, interface)
    elif where.family == socket.AF_INET:
        request = MREQN.pack(bytes(4), bytes(4), index)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, request)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)


def bind_to_device(sock: socket.socket, interface: str) -> None:
    name = interface_name(interface_index(interface))  # NotFound for no such interface
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())


# --- receivers ------------------------------------------------------------------


class Receiver:
    """recv's bound socket, and what it was asked: `label` is the bound address
    (the port the kernel picked, for port 0); `reach` where a sender on this
    host sends to (loopback for a socket bound to every address)."""

    __slots__ = ("asked_port_zero", "group", "label", "reach", "sock")

    def __init__(self, sock: socket.socket, group: Any, asked_port_zero: bool) -> None:
        self.sock = sock
        self.group = group
        self.asked_port_zero = asked_port_zero
        address = sock.getsockname()
        self.label = address_of(address)
        if ip_of(address).is_unspecified:
            loopback = "::1" if sock.family == socket.AF_INET6 else "127.0.0.1"
            address = (loopback, *address[1:])
        self.reach = address_of(address)


def receiver(text: str, group: str | None, interface: str | None) -> Receiver:
    """Bind (and join the group) as recv's target and flags say; usage errors first."""
    target = parse_host_port(text, protocol="udp", listening=True)
    joined = group_address(group) if group is not None else None
    family, sockaddr = bind_address(target, joined)
    bound = ip_of(sockaddr)
    if joined is None and bound.is_multicast:
        joined = bound  # a group as the target: receive what is sent to it
    if joined is not None:
        check_group_bind(target, joined, bound)
        if family == socket.AF_INET6 and interface is not None:  # ff02:: needs its link
            sockaddr = (sockaddr[0], sockaddr[1], 0, interface_index(interface))
        elif joined.version == 6 and int(joined) >> 112 & 0xF <= LINK_SCOPE:
            raise UsageError(str(joined), "a link-local group is joined on a link: --interface")
    sock = new_socket(family, socket.SOCK_DGRAM)
    try:
        with socket_errors(address_of(sockaddr), RECEIVE_REASONS):
            set_up(sock, sockaddr, joined, interface)
    except BaseException:
        sock.close()
        raise
    return Receiver(sock, joined, target.port == 0)


def bind_address(target: HostPort, group: Any) -> tuple[int, Any]:
    """Where to bind: a group's receiver given only a port binds the group's
    address (it then takes that group's datagrams and no others)."""
    if target.host is None and group is not None:
        if group.version == 4:
            return socket.AF_INET, (str(group), target.port)
        return socket.AF_INET6, (str(group), target.port, 0, 0)
    return resolve_addresses(target, socket.SOCK_DGRAM, passive=True)[0]


def set_up(sock: socket.socket, sockaddr: Any, group: Any, interface: str | None) -> None:
    if group is not None:  # several receivers of one group on one host
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    elif interface is not None:
        bind_to_device(sock, interface)
    if sock.family == socket.AF_INET6 and ip_of(sockaddr).is_unspecified:
        # [::] is every interface, IPv4 too, whatever net.ipv6.bindv6only says
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(sockaddr)
    if group is not None:
        join(sock, sock.family, group, interface)
    raise_receive_buffer(sock)


RECEIVE_REASONS = {
    errno.EADDRINUSE: "address already in use (another socket is bound to it)",
    errno.EADDRNOTAVAIL: "not an address of this host",
    errno.EACCES: "permission denied (ports below 1024 are root's)",
}


def group_address(text: str) -> Any:
    import ipaddress

    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(
            text, "--group takes a multicast address (224.0.0.0/4, ff00::/8)"
        ) from None
    if not address.is_multicast:
        raise UsageError(text, "not a multicast address (224.0.0.0/4, ff00::/8)")
    return address


def check_group_bind(target: HostPort, group: Any, bound: Any) -> None:
    """A socket bound to one unicast address never sees a group's datagrams."""
    if group.version != bound.version:
        raise UsageError(target.text, f"group {group} and this address are not of one IP version")
    if bound != group and not bound.is_unspecified:
        raise UsageError(
            target.text,
            f"a group's datagrams reach :PORT, {group}:PORT or every address, "
            "not one unicast address",
        )


def join(sock: socket.socket, family: int, group: Any, interface: str | None) -> None:
    """Join the group on the interface (0: the kernel picks it by route), and take
    only the groups this socket joined (IP_MULTICAST_ALL off: Linux would deliver
    every group any socket joined to a socket bound to every address)."""
    index = interface_index(interface) if interface is not None else 0
    try:
        if family == socket.AF_INET:
            request = MREQN.pack(group.packed, bytes(4), index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, request)
            sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        else:
            request = MREQ6.pack(group.packed, index)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, request)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0)
    except OSError as err:
        if err.errno != errno.ENODEV:
            raise
        raise UsageError(
            str(group), "no route says where to join this group: name an interface (--interface)"
        ) from None


def raise_receive_buffer(sock: socket.socket) -> None:
    """SO_RCVBUF up to net.core.rmem_max (the kernel doubles what it is given), never
    down: what a fast sender on this host gets ahead by is kept, within its limit."""
    most = read_sysctl("/proc/sys/net/core/rmem_max", 212992)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 2 * most:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, most)


def dropped(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped for this socket so far (None if it will not say)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * (SK_MEMINFO_DROPS + 1))
    except OSError:
        return None
    if len(raw) < 4 * (SK_MEMINFO_DROPS + 1):
        return None
    return int(struct.unpack_from("=I", raw, 4 * SK_MEMINFO_DROPS)[0])


def receive_buffer(sock: socket.socket) -> int:
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
