"""udp send and recv: datagrams by HOST:PORT, through the core's message loops.

The socket work (framings, --count/--follow/--json, waits, error lines) is the
core's (ipctool.messages, ipctool.sockets, ipctool.inet); what is here is the
UDP part: addresses and groups (endpoints.py), the sender's address for
--json, --reply, and the drops the kernel reports. inspect and clean are the
core's, from objects.UdpSource.

No `from __future__ import annotations` here: typer reads these annotations.
socket is imported inside the verbs (start-up matters).
"""

from typing import Annotated, Any

import typer

from ipctool.api import (
    CString,
    Data,
    Follow,
    Framing,
    Json,
    Lines,
    Nowait,
    Null,
    ReadyFd,
    TimeoutOption,
    UsageError,
    framing_from_flags,
    new_app,
    recv_framing,
)

app = new_app(
    help="""UDP datagrams by HOST:PORT, [IPv6]:PORT or :PORT (loopback).

send sends stdin as one datagram, or one per line (--lines) or NUL-terminated
record (--null); recv binds and prints datagrams (one, --count N or --follow),
with --json their senders. A port alone means loopback: every interface only
when named (0.0.0.0:PORT, [::]:PORT). recv on port 0 takes a free port and says
which. Multicast: send to a group address; recv --group joins it (--interface).
UDP may lose datagrams: recv raises its receive buffer so that a fast sender on
this host loses none the kernel could keep, and says how many it dropped.""",
    epilog="""\b
Examples:
  ipctool udp recv :5000 --follow --lines &
  printf 'a\\nb\\n' | ipctool udp send 127.0.0.1:5000 --lines
  echo ping | ipctool udp send server:7 --reply --timeout 2
  ipctool udp recv :5000 --group 239.1.2.3 --interface eth0
  ipctool udp inspect""",
)

SendTarget = Annotated[
    str,
    typer.Argument(
        metavar="HOST:PORT", help="Where to send: HOST:PORT, [IPv6]:PORT, or :PORT (loopback)."
    ),
]
RecvTarget = Annotated[
    str,
    typer.Argument(
        metavar="HOST:PORT",
        help="Where to receive: :PORT or PORT (loopback), HOST:PORT, [IPv6]:PORT, "
        "0.0.0.0:PORT or [::]:PORT (every interface); port 0 takes a free one.",
    ),
]
CountOption = Annotated[
    int | None,
    typer.Option("--count", "-c", metavar="N", min=1, help="Receive N datagrams, then end."),
]
Interface = Annotated[
    str | None,
    typer.Option(
        "--interface",
        "-i",
        metavar="NAME",
        help="The network interface: where a group is joined (recv) or sent to "
        "(send); otherwise only datagrams through it (SO_BINDTODEVICE, root).",
    ),
]
Group = Annotated[
    str | None,
    typer.Option(
        "--group",
        "-g",
        metavar="ADDRESS",
        help="Join this multicast group (224.0.0.0/4, ff00::/8) and receive what is sent to it.",
    ),
]
Reply = Annotated[
    bool,
    typer.Option(
        "--reply",
        "-r",
        help="Then wait for one answering datagram and print it (--timeout bounds the wait).",
    ),
]
Broadcast = Annotated[
    bool,
    typer.Option("--broadcast", "-b", help="Allow a broadcast destination (SO_BROADCAST)."),
]
SendCString = Annotated[
    bool, typer.Option("--cstring", help="End each datagram with a NUL, for C's %s.")
]


@app.command()
def send(
    target: SendTarget,
    data: Data = None,
    lines: Lines = False,
    null: Null = False,
    cstring: SendCString = False,
    reply: Reply = False,
    broadcast: Broadcast = False,
    interface: Interface = None,
    timeout: TimeoutOption = None,
) -> None:
    """Send stdin (or --data) as one datagram, or one per line (--lines) or
    NUL-terminated record (--null).

    A datagram carries at most 65507 bytes (IPv4; 65527 over IPv6): more is
    exit 7, before anything is sent. UDP has no connection: a datagram to a
    port nobody receives on is lost without a word, unless the host answers
    "port unreachable" while send still runs (exit 3). --reply then waits for
    one datagram back and prints it. A group or broadcast address may be
    given (--broadcast for the latter; --interface picks where a group's
    datagrams go out).

    \b
    Examples:
      echo hello | ipctool udp send 127.0.0.1:5000
      seq 1000 | ipctool udp send :5000 --lines
      echo ping | ipctool udp send server:7 --reply --timeout 2
      echo hi | ipctool udp send 239.1.2.3:5000 --interface eth0
    """
    from ipctool_plugins.udp import endpoints

    framing = framing_from_flags(lines, null)
    where = endpoints.destination(target, timeout)
    payload = None if data is None else bytes(data, "utf-8", "surrogateescape")
    if reply:
        require_stdout()  # where the reply goes: before anything is sent
    send_datagrams(where, framing, payload, cstring, reply, broadcast, interface, timeout)


def send_datagrams(
    where: Any,
    framing: Framing,
    payload: bytes | None,
    cstring: bool,
    reply: bool,
    broadcast: bool,
    interface: str | None,
    timeout: float | None,
) -> None:
    """The core's send loop; the first datagram is read and size-checked before the
    socket is made. A unicast destination is connected (its errors come back); a
    group or broadcast address is sent to, so that anyone's answer is taken."""
    from ipctool.api import send_messages
    from ipctool_plugins.udp import endpoints
    from ipctool_plugins.udp.datagrams import DatagramOutlet

    opened: list[Any] = []
    connect = not (where.multicast or broadcast)

    def create() -> Any:
        sock = endpoints.sender(where, broadcast=broadcast, interface=interface, connect=connect)
        opened.append(sock)
        return DatagramOutlet(
            sock,
            where.label,
            timeout=timeout,
            reasons=endpoints.SEND_REASONS,
            address=None if connect else where.sockaddr,
        )

    try:
        send_messages(
            framing,
            limit=where.largest,
            create=create,
            label=where.label,
            data=payload,
            terminator=b"\0" if cstring else b"",
            limit_of="UDP's",
            streams=False,  # UDP has no flow control: a stream would be lost (use tcp)
        )
        if reply and opened:
            print_reply(opened[0], where.label, framing, timeout)
    finally:
        for sock in opened:
            sock.close()


def print_reply(sock: Any, label: str, framing: Framing, timeout: float | None) -> None:
    """One datagram back, printed as recv prints it."""
    from ipctool.api import receive
    from ipctool_plugins.udp.datagrams import DatagramInbox

    receive(DatagramInbox(sock, label), framing, count=1, timeout=timeout)


def require_stdout() -> None:
    import os

    from ipctool.api import from_os_error

    try:
        os.fstat(1)
    except OSError as err:
        raise from_os_error("stdout", err) from None


@app.command()
def recv(
    target: RecvTarget,
    lines: Lines = False,
    null: Null = False,
    count: CountOption = None,
    follow: Follow = False,
    as_json: Json = False,
    cstring: CString = False,
    nowait: Nowait = False,
    timeout: TimeoutOption = None,
    group: Group = None,
    interface: Interface = None,
    ready_fd: ReadyFd = None,
) -> None:
    """Bind and print one datagram, --count N of them, or --follow: all until Ctrl-C
    (or --timeout seconds without one, then exit 0).

    --lines adds a newline after each datagram, --null a NUL; --json prints one
    line per datagram with its sender (address, host, port) and size. Port 0
    takes a free port and says which on stderr (and the ready fd). The receive
    buffer is raised to net.core.rmem_max; datagrams the kernel dropped anyway
    (the buffer was full) are counted on stderr at the end. --group joins a
    multicast group (on --interface, or where the routes say).

    \b
    Examples:
      ipctool udp recv :5000
      ipctool udp recv 0.0.0.0:5000 --follow --lines
      ipctool udp recv :0 --count 10 --json
      ipctool udp recv :5000 --group 239.1.2.3 --interface eth0 --follow
    """
    from ipctool_plugins.udp import endpoints

    if follow and count is not None:
        raise UsageError(None, "--follow receives until stopped; --count N stops after N")
    framing = recv_framing(lines, null, count=count or 1, follow=follow, as_json=as_json)
    require_stdout()
    bound = endpoints.receiver(target, group, interface)
    with bound.sock:
        receive_datagrams(
            bound, framing, count, follow, nowait, timeout, as_json, cstring, ready_fd
        )


def receive_datagrams(
    bound: Any,
    framing: Framing,
    count: int | None,
    follow: bool,
    nowait: bool,
    timeout: float | None,
    as_json: bool,
    cstring: bool,
    ready_fd: int | None,
) -> None:
    from ipctool.api import announce_ready, receive, say
    from ipctool_plugins.udp.datagrams import DatagramInbox, report_drops

    inbox = DatagramInbox(bound.sock, bound.label, senders=as_json)
    if bound.asked_port_zero:
        say(f"ipctool: udp: receiving on {bound.label}")
    announce_ready(bound.reach, ready_fd)
    try:
        receive(
            inbox,
            framing,
            count=count or 1,
            follow=follow,
            nowait=nowait,
            timeout=timeout,
            as_json=as_json,
            cstring=cstring,
            meta_key="sender",
        )
    finally:
        report_drops(inbox)
