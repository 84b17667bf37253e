"""Internet addresses for the network plugins (tcp, udp): HOST:PORT targets, the
system resolver, and how an address is written back.

A target is one of
- `HOST:PORT`: a name the system resolver knows (/etc/hosts, DNS...) or an
  IPv4 address;
- `[IPV6]:PORT`: an IPv6 address in brackets, with a scope where it needs one
  (`[fe80::1%eth0]:PORT`);
- `:PORT`: this host's loopback, 127.0.0.1. A listener given only a port
  never listens on other interfaces: every interface is said explicitly,
  `0.0.0.0:PORT` or `[::]:PORT`.
PORT is a number or a service name from /etc/services (`http`). Port 0 is for
a listener: the kernel picks a free port, which it then reports.

Resolving a name can take long (a DNS server that does not answer): it runs
in a thread while the command waits as every wait does, so --timeout and
Ctrl-C end it. This module imports socket: load it only inside the verbs
that use it.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from typing import Any

from ipctool.errors import IpcError, NotFound, UsageError
from ipctool.waiting import Deadline, wait_fd

LOOPBACK = "127.0.0.1"
UNSPECIFIED = ("0.0.0.0", "::")
PORT_MAX = 65535
# getaddrinfo's failures (EAI_*): what a script can do about each (README "Exit codes").
NO_SUCH_HOST = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5), socket.EAI_ADDRFAMILY}
TRY_AGAIN = {socket.EAI_AGAIN}


class HostPort:
    """A parsed target: host None means this host's loopback (`:PORT`)."""

    __slots__ = ("bracketed", "host", "port", "text")

    def __init__(self, text: str, host: str | None, port: int, bracketed: bool = False) -> None:
        self.text = text  # as typed: what error lines name
        self.host = host
        self.port = port
        self.bracketed = bracketed  # [IPV6]: must be an IPv6 address, never a name

    @property
    def unspecified(self) -> bool:
        """0.0.0.0 or [::]: every interface (a listener's), not an address to reach."""
        return self.host in UNSPECIFIED

    def __repr__(self) -> str:
        return f"HostPort({self.text!r}, {self.host!r}, {self.port})"


def parse_host_port(text: str, *, protocol: str = "tcp", listening: bool) -> HostPort:
    """HOST:PORT, [IPV6]:PORT or :PORT; a usage error (exit 2) for anything else.

    A sender needs a port above 0 and an address it can reach: 0.0.0.0 and ::
    name every interface of a listener, not a host."""
    host, port_text, bracketed = _split(text, listening)
    port = parse_port(text, port_text, protocol)
    if not listening:
        if port == 0:
            raise UsageError(text, "port 0: only a listener takes port 0 (a free port)")
        if host in UNSPECIFIED:
            raise UsageError(
                text,
                f"{host} means every interface of a listener, not a host to reach; "
                f"this host is {LOOPBACK if host == '0.0.0.0' else '[::1]'}",
            )
    return HostPort(text, host or None, port, bracketed)


def _split(text: str, listening: bool) -> tuple[str, str, bool]:
    """(host, port text, bracketed) of a target."""
    if not text:
        raise UsageError(None, "no address: HOST:PORT, [IPV6]:PORT or :PORT")
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise UsageError(text, "an IPv6 address in brackets needs its closing ]")
        if not inside:
            raise UsageError(text, "empty brackets: write [IPV6]:PORT, e.g. [::1]:4242")
        if not rest.startswith(":"):
            raise UsageError(text, f"no port: write [{inside}]:PORT")
        return inside, rest[1:], True
    host, colon, port = text.rpartition(":")
    if not colon:
        raise UsageError(text, _no_port_hint(text, listening))
    if ":" in host:
        raise UsageError(text, f"an IPv6 address goes in brackets: [{host}]:{port}")
    return host, port, False


def _no_port_hint(text: str, listening: bool) -> str:
    if text in UNSPECIFIED:
        return f"no port: {text}:PORT listens on every interface"
    if text.isdigit():
        where = "listens on" if listening else "reaches"
        return f"no port: :{text} {where} loopback port {text} (HOST:PORT for another host)"
    return "no port: write HOST:PORT (or :PORT for this host's loopback)"


def parse_port(target: str, text: str, protocol: str = "tcp") -> int:
    """A port number 0-65535, or a service name /etc/services knows for `protocol`."""
    if not text:
        raise UsageError(target, "no port after the colon")
    if text.isdigit():
        port = int(text)
        if port > PORT_MAX:
            raise UsageError(target, f"port {text}: out of range (0-{PORT_MAX})")
        return port
    if text.isascii() and text.replace("-", "").isalnum():
        try:
            return socket.getservbyname(text, protocol)
        except OSError:
            pass
    raise UsageError(target, f"port {text!r}: not a number, nor a {protocol} service name")


def address_text(sockaddr: Any) -> str:
    """An address as ipctool writes it, and takes back: 127.0.0.1:4242, [::1]:4242."""
    host, port = sockaddr[0], sockaddr[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def family_name(family: int) -> str:
    return "ipv6" if family == socket.AF_INET6 else "ipv4"


Address = tuple[int, Any]  # (family, sockaddr) as socket.connect and bind take it


def resolve_addresses(
    target: HostPort,
    kind: int,
    *,
    passive: bool = False,
    timeout: float | Deadline | None = None,
) -> list[Address]:
    """Every address of the target, in the resolver's order (a sender tries each).

    `passive`: for a listener (bind). `:PORT` is 127.0.0.1; a literal address
    is taken as it is; a name goes to the system resolver, waited for under
    `timeout` and Ctrl-C. A name with no address is a usage error (exit 2); the
    resolver out of reach for now (EAI_AGAIN) is exit 3, worth a retry.
    """
    proto = socket.IPPROTO_UDP if kind == socket.SOCK_DGRAM else socket.IPPROTO_TCP
    if target.host is None:
        return [(socket.AF_INET, (LOOPBACK, target.port))]
    flags = socket.AI_PASSIVE if passive else 0
    try:
        found = socket.getaddrinfo(
            target.host, target.port, 0, kind, proto, flags | socket.AI_NUMERICHOST
        )
    except socket.gaierror as err:
        if target.bracketed or err.errno not in NO_SUCH_HOST:
            raise _resolve_error(target, err) from None
        found = _lookup(target, kind, proto, flags, timeout)
    return [(family, sockaddr) for family, _, _, _, sockaddr in found]


def _lookup(
    target: HostPort, kind: int, proto: int, flags: int, timeout: float | Deadline | None
) -> list[Any]:
    """getaddrinfo for a name, in a thread: the wait for it is the core's (a pipe
    the thread writes to once done), so --timeout and Ctrl-C end it. The thread
    owns the pipe's write end and the caller its read end: each closes its own,
    whichever finishes first."""
    import threading

    done_read, done_write = os.pipe2(os.O_CLOEXEC)
    answer: list[Any] = []

    def look_up() -> None:
        try:
            answer.append(socket.getaddrinfo(target.host, target.port, 0, kind, proto, flags))
        except OSError as err:
            answer.append(err)
        finally:
            with contextlib.suppress(OSError):  # the caller stopped waiting (timeout, Ctrl-C)
                os.write(done_write, b"\n")
            os.close(done_write)

    threading.Thread(target=look_up, name="resolver", daemon=True).start()
    try:
        wait_fd(done_read, select.POLLIN, timeout=timeout, obj=target.text)
    finally:
        os.close(done_read)
    result = answer[0]
    if isinstance(result, socket.gaierror):
        raise _resolve_error(target, result)
    if isinstance(result, OSError):
        from ipctool.errors import from_os_error

        raise from_os_error(target.text, result)
    return list(result)


def _resolve_error(target: HostPort, err: socket.gaierror) -> IpcError:
    host = target.host or ""
    if target.bracketed:
        return UsageError(target.text, f"{host}: not an IPv6 address")
    if err.errno in NO_SUCH_HOST:
        return UsageError(target.text, f"{host} does not resolve: no such host")
    if err.errno in TRY_AGAIN:
        return NotFound(target.text, f"{host} does not resolve for now: {_words(err)}")
    if err.errno == socket.EAI_SYSTEM and err.args:
        from ipctool.errors import from_os_error

        return from_os_error(target.text, OSError(*err.args))
    return IpcError(target.text, f"{host} does not resolve: {_words(err)}")


def _words(err: socket.gaierror) -> str:
    return (err.strerror or str(err)).lower()
