"""unix send, recv and pair: unix domain sockets by PATH or @NAME, and socketpairs.

The socket work (connect, accept, the relay, datagrams through the core's
framings, error lines) is the core's (ipctool.sockets); what is here is the
unix part: targets, the socket file (ipctool_plugins.unix.addresses), the
sender's address and credentials for --json, and pair. inspect and clean are
the core's, from objects.UnixSource.

No `from __future__ import annotations` here: typer reads these annotations.
socket is imported inside the verbs (start-up matters).
"""

from typing import Annotated, Any

import typer

from ipctool.api import (
    DEFAULT_MODE,
    CString,
    Data,
    Follow,
    Framing,
    Json,
    KeepOpen,
    Lines,
    Mode,
    NoReply,
    Nowait,
    Null,
    ReadyFd,
    Stream,
    TimeoutOption,
    UsageError,
    framing_from_flags,
    new_app,
    recv_framing,
)

app = new_app(
    help="""Unix domain sockets by PATH or @NAME (abstract), and socketpairs.

recv listens (it makes the socket file, mode 0600 or --mode, and removes it at the
end unless --keep) and writes what it receives to stdout; send connects, writes stdin,
half-closes and prints the reply until the peer closes. --type stream (default),
dgram or seqpacket; dgram and seqpacket keep message boundaries (--lines, --null,
--count, --json). A path that is not a socket is refused untouched; a stale socket
file (nothing listens) is replaced only with --force, a live one never.""",
    epilog="""\b
Examples:
  ipctool unix recv /tmp/app.sock > out &
  tar c dir | ipctool unix send /tmp/app.sock
  ipctool unix recv @logs --type dgram --follow --lines
  ipctool unix pair -- ./server -- ./client
  ipctool unix inspect --json""",
)

Target = Annotated[
    str, typer.Argument(metavar="PATH|@NAME", help="A socket file's path, or @NAME (abstract).")
]
SocketType = Annotated[
    str,
    typer.Option(
        "--type",
        "-t",
        metavar="stream|dgram|seqpacket",
        help="Socket type: a byte stream (default), datagrams, or records on a connection.",
    ),
]
Keep = Annotated[
    bool, typer.Option("--keep", help="Keep the socket file at the end (default: remove it).")
]
ReplaceStale = Annotated[
    bool,
    typer.Option(
        "--force", help="Replace a stale socket file (nothing listens on it); never a live one."
    ),
]
CountOption = Annotated[
    int | None,
    typer.Option("--count", "-c", metavar="N", min=1, help="Receive N messages, then end."),
]
MESSAGE_TYPES = ("dgram", "seqpacket")
STREAM_PIECE = 1 << 18  # --stream over datagrams: pieces well inside a socket's buffer


def socket_type(name: str) -> int:
    from ipctool.api import SOCKET_TYPES

    if name not in SOCKET_TYPES:
        raise UsageError(name, "--type is stream, dgram or seqpacket")
    return SOCKET_TYPES[name]


def check_stream_flags(name: str, **flags: bool) -> None:
    """A stream has no message boundaries: the framing flags are for the other types."""
    given = [f"--{flag.replace('_', '-')}" for flag, on in flags.items() if on]
    if name == "stream" and given:
        raise UsageError(
            None,
            f"{', '.join(given)}: for --type dgram or seqpacket "
            "(a stream keeps no message boundaries)",
        )


def wmem_max() -> int:
    from ipctool.api import read_sysctl

    return read_sysctl("/proc/sys/net/core/wmem_max", 212992)


def largest_datagram() -> int:
    """The largest datagram or record: the sender's send buffer, which send raises to
    net.core.wmem_max (the kernel doubles it), less the kernel's 32 bytes."""
    return 2 * wmem_max() - 32


@app.command()
def send(
    target: Target,
    sock_type: SocketType = "stream",
    data: Data = None,
    lines: Lines = False,
    null: Null = False,
    stream: Stream = False,
    no_reply: NoReply = False,
    nowait: Nowait = False,
    timeout: TimeoutOption = None,
) -> None:
    """Connect, write stdin (or --data), half-close, and print the reply until the peer
    closes (--no-reply: end once stdin is sent).

    A stream's bytes pass unchanged. dgram: stdin is one datagram, or one per
    line (--lines) or NUL-terminated record (--null), or any size in pieces
    (--stream, for recv --stream); seqpacket: the same, as records on a
    connection, and the peer's reply records are printed as recv would.
    Nothing listening: exit 3; --timeout bounds the connect and every idle wait.

    \b
    Examples:
      tar c dir | ipctool unix send /tmp/app.sock
      echo '{"cmd": "status"}' | ipctool unix send /run/app.sock
      printf 'a\\nb\\n' | ipctool unix send @logs --type dgram --lines
    """
    from ipctool_plugins.unix import addresses

    kind = socket_type(sock_type)
    check_stream_flags(sock_type, lines=lines, null=null, stream=stream)
    if sock_type == "dgram" and no_reply:
        raise UsageError(None, "--no-reply: a datagram gets no reply")
    if sock_type == "stream" and nowait:
        raise UsageError(None, "--nowait is for dgram and seqpacket (a full receiver)")
    address = addresses.parse(target)
    framing = framing_from_flags(lines, null, stream)
    payload = None if data is None else bytes(data, "utf-8", "surrogateescape")
    if sock_type == "stream":
        send_bytes(address, kind, payload, not no_reply, timeout)
    else:
        send_records(address, kind, framing, payload, not no_reply, nowait, timeout)


def connected(address: Any, kind: int, timeout: float | None) -> Any:
    """A socket connected to the target (its checks first: nothing listening is exit 3)."""
    import socket

    from ipctool.api import connect_socket, new_socket
    from ipctool_plugins.unix import addresses

    addresses.connectable(address)
    sock = new_socket(socket.AF_UNIX, kind)
    try:
        if kind != socket.SOCK_STREAM:  # room for the largest message (largest_datagram)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wmem_max())
        if kind == socket.SOCK_DGRAM:
            # An address the kernel picks (@ and five hex digits): a receiver can
            # answer, and nc -lUu, which connects back to its sender, accepts us.
            sock.bind("")
        connect_socket(
            sock, address.sockaddr, label=address.label, timeout=timeout, reasons=reasons(kind)
        )
    except BaseException:
        sock.close()
        raise
    return sock


def reasons(kind: int) -> dict[int, str]:
    """connect's errors in unix words."""
    import errno

    from ipctool.api import SOCKET_TYPES

    other = next(name for name, number in SOCKET_TYPES.items() if number == kind)
    return {
        errno.ENOENT: "no such socket",
        errno.ECONNREFUSED: "connection refused: nothing listens on it",
        errno.EPROTOTYPE: f"not a {other} socket: try another --type",
    }


def send_bytes(
    address: Any, kind: int, data: bytes | None, reply: bool, timeout: float | None
) -> None:
    from ipctool.api import send_stream

    if data is None:
        require_stdin()
    if reply:
        require_stdout()  # where the reply goes: before anything connects
    sock = connected(address, kind, timeout)
    with sock:
        send_stream(sock, label=address.label, timeout=timeout, data=data, reply=reply)


def require_stdin() -> None:
    """A closed stdin is an error before anything connects."""
    import os

    from ipctool.api import from_os_error

    try:
        os.fstat(0)
    except OSError as err:
        raise from_os_error("stdin", err) from None


def send_records(
    address: Any,
    kind: int,
    framing: Framing,
    data: bytes | None,
    reply: bool,
    nowait: bool,
    timeout: float | None,
) -> None:
    """Datagrams or seqpacket records: each message one send, through the core's framings.
    The first message is read and size-checked before anything connects."""
    import socket

    from ipctool.api import SocketOutlet, send_messages

    opened: list[Any] = []

    def create() -> Any:
        sock = connected(address, kind, timeout)
        opened.append(sock)
        return SocketOutlet(sock, address.label, nowait=nowait, timeout=timeout)

    try:
        send_messages(
            framing,
            limit=STREAM_PIECE if framing is Framing.STREAM else largest_datagram(),
            create=create,
            label=address.label,
            data=data,
            limit_of="a unix socket's",
        )
        if opened and kind == socket.SOCK_SEQPACKET:
            print_replies(opened[0], address.label, framing, reply, timeout)
    finally:
        for sock in opened:
            sock.close()


def print_replies(
    sock: Any, label: str, framing: Framing, reply: bool, timeout: float | None
) -> None:
    """seqpacket: half-close, then the peer's records to stdout until it closes."""
    from ipctool.api import UNTIL_END, SocketInbox, half_close, receive, socket_errors

    with socket_errors(label):
        half_close(sock)
    if not reply:
        return
    inbox = SocketInbox(sock, label, bufsize=largest_datagram() + 1, ends=True)
    shown = Framing.WHOLE if framing is Framing.STREAM else framing  # replies as they come
    receive(inbox, shown, count=UNTIL_END, timeout=timeout)


@app.command()
def recv(
    target: Target,
    sock_type: SocketType = "stream",
    lines: Lines = False,
    null: Null = False,
    stream: Stream = False,
    count: CountOption = None,
    follow: Follow = False,
    keep_open: KeepOpen = False,
    as_json: Json = False,
    cstring: CString = False,
    nowait: Nowait = False,
    timeout: TimeoutOption = None,
    mode: Mode = DEFAULT_MODE,
    keep: Keep = False,
    force: ReplaceStale = False,
    ready_fd: ReadyFd = None,
) -> None:
    """Listen, accept one connection (or --keep-open: one after another) and write what
    it sends to stdout; dgram: receive one datagram, --count N or --follow.

    The socket file is made with --mode (0600) and removed at the end (also on
    Ctrl-C, a timeout or SIGTERM) unless --keep. seqpacket: every record of the
    connection until the peer closes, or --count N. --json: one line per message
    with its sender (address, pid, uid, gid). --timeout bounds the wait for a
    peer and every idle wait; with --keep-open or --follow, that many seconds
    without anything new end recv quietly (exit 0).

    \b
    Examples:
      ipctool unix recv /tmp/app.sock > out
      ipctool unix recv /tmp/app.sock --keep-open --timeout 60
      ipctool unix recv /tmp/log.sock --type dgram --follow --json
      ipctool unix recv @jobs --type seqpacket --lines
    """
    from ipctool_plugins.unix import addresses

    kind = socket_type(sock_type)
    check_stream_flags(
        sock_type,
        lines=lines,
        null=null,
        count=count is not None,
        follow=follow,
        json=as_json,
        cstring=cstring,
        nowait=nowait,
    )
    check_recv_flags(sock_type, count, follow, keep_open, nowait)
    framing = recv_framing(lines, null, stream, count=count or 1, follow=follow, as_json=as_json)
    address = addresses.parse(target)
    place = addresses.SocketFile(address, mode, keep, force)
    require_stdout()
    with bound(place, kind) as sock:
        if sock_type == "dgram":
            receive_datagrams(
                sock,
                address.label,
                framing,
                count,
                follow,
                nowait,
                timeout,
                as_json,
                cstring,
                ready_fd,
            )
        else:
            serve(
                sock,
                address.label,
                kind,
                framing,
                count,
                keep_open,
                timeout,
                as_json,
                cstring,
                ready_fd,
            )


def check_recv_flags(
    name: str, count: int | None, follow: bool, keep_open: bool, nowait: bool
) -> None:
    if name == "dgram" and keep_open:
        raise UsageError(
            None, "--keep-open: datagrams have no connections; --follow receives until stopped"
        )
    if name == "seqpacket" and (follow or nowait):
        raise UsageError(
            None,
            "seqpacket receives a connection until its peer closes; --keep-open takes the next",
        )
    if keep_open and count is not None:
        raise UsageError(None, "--keep-open receives every connection whole; drop --count")
    if follow and count is not None:
        raise UsageError(None, "--follow receives until stopped; --count N stops after N")


def require_stdout() -> None:
    import os

    from ipctool.api import from_os_error

    try:
        os.fstat(1)
    except OSError as err:
        raise from_os_error("stdout", err) from None


class bound:
    """The socket bound (and listening, for stream and seqpacket) at the target; at
    the end closed and its socket file removed, however recv ends (Ctrl-C, SIGTERM).
    A class, not a @contextmanager: see relay() on Ctrl-C landing as a block ends."""

    def __init__(self, place: Any, kind: int) -> None:
        self.place = place
        self.kind = kind
        self.sock: Any = None

    def __enter__(self) -> Any:
        import socket

        from ipctool.api import new_socket, start_listening

        self.place.clear_way()
        self.sock = new_socket(socket.AF_UNIX, self.kind)
        try:
            self.place.bind(self.sock)
            if self.kind != socket.SOCK_DGRAM:
                start_listening(self.sock, label=self.place.address.label)
        except BaseException:
            self.__exit__()
            raise
        return self.sock

    def __exit__(self, *exc: object) -> None:
        try:
            self.place.remove()
        finally:
            if self.sock is not None:
                self.sock.close()


def receive_datagrams(
    sock: Any,
    label: str,
    framing: Framing,
    count: int | None,
    follow: bool,
    nowait: bool,
    timeout: float | None,
    as_json: bool,
    cstring: bool,
    ready_fd: int | None,
) -> None:
    from ipctool.api import SocketInbox, announce_ready, receive
    from ipctool_plugins.unix import senders

    inbox: Any
    if as_json:
        inbox = senders.CredentialsInbox(sock, label, bufsize=largest_datagram() + 1)
    else:
        inbox = SocketInbox(sock, label, bufsize=largest_datagram() + 1)
    announce_ready(label, ready_fd)
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


def serve(
    listener: Any,
    label: str,
    kind: int,
    framing: Framing,
    count: int | None,
    keep_open: bool,
    timeout: float | None,
    as_json: bool,
    cstring: bool,
    ready_fd: int | None,
) -> None:
    import socket

    from ipctool.api import (
        UNTIL_END,
        SocketInbox,
        announce_ready,
        receive,
        receive_stream,
        serve_connections,
    )
    from ipctool_plugins.unix import senders

    def stream(conn: Any, peer: Any) -> None:
        receive_stream(conn, label=label, timeout=timeout)

    def records(conn: Any, peer: Any) -> None:
        sender = senders.peer_of(conn, peer) if as_json else None
        inbox = SocketInbox(
            conn, label, bufsize=largest_datagram() + 1, ends=True, sender=lambda _: sender
        )
        receive(
            inbox,
            framing,
            count=count or UNTIL_END,
            timeout=timeout,
            as_json=as_json,
            cstring=cstring,
            meta_key="sender",
        )

    announce_ready(label, ready_fd)
    handle = stream if kind == socket.SOCK_STREAM else records
    serve_connections(listener, handle, label=label, keep_open=keep_open, timeout=timeout)


@app.command()
def pair(
    commands: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="-- CMD1 [ARG...] -- CMD2 [ARG...]",
            help="The two commands, each after a --.",
        ),
    ] = None,
    sock_type: SocketType = "stream",
    fd: Annotated[
        int | None,
        typer.Option(
            "--fd",
            metavar="N",
            min=3,
            help="Give each command its end as fd N (its stdin and stdout stay as they are).",
        ),
    ] = None,
) -> None:
    """Run two commands connected by a socketpair: each gets one end as its stdin and
    stdout (or as fd N with --fd N), as the lecture's socketpair example does with
    fork. Both exit statuses are reported when either fails; the exit status is the
    second's if it failed, else the first's (as a pipeline with pipefail).

    \b
    Examples:
      ipctool unix pair -- ./server -- ./client
      ipctool unix pair --fd 3 -- ./worker parent -- ./worker child
      ipctool unix pair --type seqpacket -- ./a -- ./b
    """
    from ipctool_plugins.unix.pair import run_pair, split_commands

    kind = socket_type(sock_type)
    first, second = split_commands(commands or [])
    raise typer.Exit(run_pair(first, second, kind, fd))
