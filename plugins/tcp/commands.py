"""tcp send, recv and clean: TCP connections by HOST:PORT, [IPV6]:PORT or :PORT.

The socket work (connect, accept, the relay with its reply direction, error
lines) is the core's (ipctool.sockets), and so are targets and the resolver
(ipctool.inet); what is here is TCP's: which address a listener binds
(loopback unless told), SO_REUSEADDR, a port picked by the kernel and
reported, trying each address a name resolves to, and clean. inspect is the
core's, from objects.TcpSource.

No `from __future__ import annotations` here: typer reads these annotations.
socket is imported inside the verbs (start-up matters).
"""

import errno
from typing import Annotated, Any

import typer

from ipctool.api import (
    Data,
    DryRun,
    Json,
    KeepOpen,
    NoReply,
    ReadyFd,
    Stale,
    TimeoutOption,
    UsageError,
    new_app,
)

app = new_app(
    help="""TCP connections to and from HOST:PORT, [IPV6]:PORT or :PORT (this host's loopback).

recv listens (on 127.0.0.1 given only :PORT; every interface only when told so,
0.0.0.0:PORT or [::]:PORT; port 0 picks a free port and reports it), accepts one
connection (or --keep-open: one after another) and writes what it receives to
stdout. send connects (trying each address a name resolves to), writes stdin,
half-closes, and prints the reply until the peer closes.""",
    epilog="""\b
Examples:
  ipctool tcp recv :4242 > out &
  tar c dir | ipctool tcp send 127.0.0.1:4242
  echo hello | ipctool tcp send [::1]:7
  ipctool tcp recv 0.0.0.0:8080 --keep-open --reply 'ok'
  ipctool tcp inspect :4242""",
)

SendTarget = Annotated[
    str,
    typer.Argument(
        metavar="HOST:PORT",
        help="Where to connect: HOST:PORT, [IPV6]:PORT, or :PORT for 127.0.0.1.",
    ),
]
ListenTarget = Annotated[
    str,
    typer.Argument(
        metavar="[HOST]:PORT",
        help="Where to listen: :PORT (127.0.0.1), an address of this host with its port, "
        "0.0.0.0:PORT or [::]:PORT for every interface. Port 0: a free port.",
    ),
]
Reply = Annotated[
    str | None,
    typer.Option(
        "--reply",
        metavar="TEXT",
        help="Send TEXT (UTF-8) to each peer, then half-close: a client that reads until "
        "the server closes gets its answer ('' sends nothing).",
    ),
]


@app.command()
def send(
    target: SendTarget,
    data: Data = None,
    no_reply: NoReply = False,
    timeout: TimeoutOption = None,
) -> None:
    """Connect, write stdin (or --data), half-close, and print the reply until the peer
    closes (--no-reply: end once stdin is sent).

    A name is tried at each address it resolves to, in the resolver's order.
    Connection refused, or no route to the host: exit 3; a host that does not
    resolve: exit 2; reset by the peer: exit 1. --timeout bounds the name's
    resolution and the connect together, and then every idle wait.

    \b
    Examples:
      tar c dir | ipctool tcp send 127.0.0.1:4242
      printf 'GET / HTTP/1.0\\r\\n\\r\\n' | ipctool tcp send example.org:http
      ipctool tcp send :4242 --data 'ping' --no-reply
    """
    from ipctool.api import parse_host_port

    address = parse_host_port(target, listening=False)
    payload = None if data is None else bytes(data, "utf-8", "surrogateescape")
    if payload is None:
        require_stdio(0, "stdin")
    if not no_reply:
        require_stdio(1, "stdout")  # where the reply goes: before anything connects
    sock = connected(address, timeout)
    with sock:
        from ipctool.api import send_stream

        send_stream(sock, label=address.text, timeout=timeout, data=payload, reply=not no_reply)


def require_stdio(fd: int, name: str) -> None:
    """A closed stdin or stdout is an error before anything connects."""
    import os

    from ipctool.api import from_os_error

    try:
        os.fstat(fd)
    except OSError as err:
        raise from_os_error(name, err) from None


def connected(address: Any, timeout: float | None) -> Any:
    """A socket connected to the first address of the target that takes it.

    Every address is tried in turn under one deadline (resolution included);
    when none takes it, the last one's error stands, saying how many were tried.
    """
    import socket

    from ipctool.api import (
        Deadline,
        IpcError,
        Timeout,
        address_text,
        connect_socket,
        new_socket,
        resolve_addresses,
    )

    deadline = Deadline(timeout)
    addresses = resolve_addresses(address, socket.SOCK_STREAM, timeout=deadline)
    failure: IpcError | None = None
    for family, sockaddr in addresses:
        sock = new_socket(family, socket.SOCK_STREAM)
        try:
            connect_socket(sock, sockaddr, label=address.text, timeout=deadline)
        except Timeout:
            sock.close()
            raise
        except IpcError as err:
            sock.close()
            failure = err
            if len(addresses) > 1:
                err.reason += f" (at {address_text(sockaddr)})"
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    assert failure is not None  # the resolver gives at least one address
    raise failure


@app.command()
def recv(
    target: ListenTarget,
    keep_open: KeepOpen = False,
    reply: Reply = None,
    timeout: TimeoutOption = None,
    ready_fd: ReadyFd = None,
) -> None:
    """Listen, accept one connection (or --keep-open: one after another) and write what
    it sends to stdout until it closes.

    :PORT listens on 127.0.0.1 only; 0.0.0.0:PORT or [::]:PORT on every
    interface ([::] takes IPv4 peers too). Port 0: the kernel picks a free
    port, said on stderr and on the ready fd (--ready-fd) as HOST:PORT. The
    listener has SO_REUSEADDR (a port left in TIME-WAIT is taken again at
    once); a port another socket listens on is exit 6. --timeout bounds the
    wait for a peer and every idle wait; with --keep-open, that many seconds
    without a new connection end recv quietly (exit 0).

    \b
    Examples:
      ipctool tcp recv :4242 > out
      ipctool tcp recv 127.0.0.1:0 --ready-fd 3 3>port
      ipctool tcp recv [::]:8080 --keep-open --timeout 60
      ipctool tcp recv :4242 --reply 'Hello, world!'
    """
    from ipctool.api import parse_host_port

    address = parse_host_port(target, listening=True)
    answer = None if reply is None else bytes(reply, "utf-8", "surrogateescape")
    require_stdio(1, "stdout")
    listener, label = listening(address, timeout)
    with listener:
        serve(listener, label, answer, keep_open, timeout, ready_fd, picked=address.port == 0)


def listening(address: Any, timeout: float | None) -> tuple[Any, str]:
    """A listening socket at the target, and its address as written (the port the
    kernel picked, for port 0)."""
    import socket

    from ipctool.api import (
        address_text,
        new_socket,
        resolve_addresses,
        socket_errors,
        start_listening,
    )

    family, sockaddr = resolve_addresses(
        address, socket.SOCK_STREAM, passive=True, timeout=timeout
    )[0]
    sock = new_socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address.unspecified:
            # [::] is every interface, both families, whatever net.ipv6.bindv6only says
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        with socket_errors(address.text, bind_reasons()):
            sock.bind(sockaddr)
        label = address_text(sock.getsockname())
        start_listening(sock, label=label)
    except BaseException:
        sock.close()
        raise
    return sock, label


# accept on a listener closed from outside (clean --force, ss -K): not listening any more
CLOSED = {errno.EINVAL: "the listener was closed from outside (clean --force, ss -K)"}


def bind_reasons() -> dict[int, str]:
    return {
        errno.EADDRINUSE: "address already in use: another socket holds this port",
        errno.EADDRNOTAVAIL: "not an address of this host",
        errno.EACCES: "permission denied: ports below 1024 need root (CAP_NET_BIND_SERVICE)",
    }


def serve(
    listener: Any,
    label: str,
    answer: bytes | None,
    keep_open: bool,
    timeout: float | None,
    ready_fd: int | None,
    *,
    picked: bool,
) -> None:
    from ipctool.api import announce_ready, receive_stream, say, send_stream, serve_connections

    def handle(conn: Any, peer: Any) -> None:
        if answer is None:
            receive_stream(conn, label=label, timeout=timeout)
        else:  # the answer goes out while the peer's bytes are printed, then a half-close
            send_stream(conn, label=label, timeout=timeout, data=answer, reply=True)

    if picked:
        say(f"ipctool: tcp: listening on {label}")
    announce_ready(label, ready_fd)
    serve_connections(
        listener, handle, label=label, keep_open=keep_open, timeout=timeout, reasons=CLOSED
    )


@app.command()
def clean(
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="[ADDRESS|LOCAL,PEER|socket:[INODE]]",
            help="A socket as inspect names it, or an address to look at.",
        ),
    ] = None,
    stale: Stale = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Close the one socket named from outside, as ss -K does (root): its "
            "process's next call fails, a connection's peer gets a reset.",
        ),
    ] = False,
    dry_run: DryRun = False,
    as_json: Json = False,
) -> None:
    """Report the TCP sockets that need someone's attention; close one only when named
    with --force.

    A TCP socket is never stale: it lives while a process holds it, and goes
    when that process closes it (or ends). clean (or clean --stale) lists, with
    the processes holding them, listeners with connections nobody has accepted
    and connections whose peer has closed that the process never closed
    (CLOSE-WAIT, a descriptor leak); then one line on stderr saying that
    nothing was removed, and how many sockets no process holds any more
    (TIME-WAIT and the like, which the kernel ends by itself). Exit 0, with
    "nothing to clean" when there is nothing to report. clean SOCKET: refused,
    naming its process (exit 6); with --force it is closed from outside, as
    ss -K does (root only).

    \b
    Examples:
      ipctool tcp clean
      ipctool tcp clean --json
      ipctool tcp clean 127.0.0.1:4242,127.0.0.1:51234 --force
    """
    from ipctool_plugins.tcp.objects import report

    if stale and target is not None:
        raise UsageError(target, "--stale looks at every socket; drop the target")
    if force and target is None:
        raise UsageError(None, "--force closes one socket: name it")
    report(target, force=force, as_json=as_json, dry_run=dry_run)
