"""Sockets for every socket mechanism: unix today, tcp and udp on the same code.

A socket plugin keeps only what is its own: how its targets are written and
become addresses (a path or @name; HOST:PORT), what binding needs (a socket
file and its policy; SO_REUSEADDR, port 0), what a sender's address looks
like, and inspect/clean. The rest is here, once:

- `connect_socket(sock, address, label=, timeout=)`: a connection, waited for under
  --timeout and Ctrl-C (a unix listener whose queue is full is tried again);
- `serve_connections(listener, handle, label=, keep_open=, timeout=)`: accept one
  connection, or with --keep-open one after another, each closed after;
- `send_stream(sock, ...)`: stdin (or --data) to the peer through the relay
  (splice where a pipe is at one end), then a half-close, then the peer's
  reply to stdout until it closes; replies that come while stdin still flows
  are printed meanwhile (relay.Backflow), so an echoing peer never deadlocks;
- `receive_stream(conn, ...)`: the peer's bytes to stdout until it closes;
- `SocketOutlet` / `SocketInbox`: datagrams and seqpacket records through the
  core's message loops (ipctool.messages: --lines, --null, --count, --json);
- `socket_errors(label)`: kernel errors as one line naming the socket, with the
  exit codes of the errno table (README "Exit codes").

Every socket here is non-blocking: waits are the core's (ipctool.waiting), so
--timeout, Ctrl-C and a closed stdout end them at once. This module imports
socket: load it only inside the verbs that use it.
"""

from __future__ import annotations

import errno
import os
import select
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ipctool.errors import IpcError, Timeout, WouldBlock, naming
from ipctool.messages import Ended, Message
from ipctool.waiting import Deadline, pause, wait_fd, when_ready

if TYPE_CHECKING:
    import mmap

SOCKET_TYPES = {
    "stream": socket.SOCK_STREAM,
    "dgram": socket.SOCK_DGRAM,
    "seqpacket": socket.SOCK_SEQPACKET,
}
TYPE_NAMES = {number: name for name, number in SOCKET_TYPES.items()}
BACKLOG = 128  # connections the kernel queues before accept (capped by net.core.somaxconn)
PEER_GONE = "the peer closed the connection"

# How the kernel's errors read in a socket's error line. The exit code is the
# errno's (ipctool.errors): refused 3, in use 6, reset and closed 1, timed out 124.
REASONS: dict[int, str] = {
    errno.ECONNREFUSED: "connection refused: nothing is listening",
    errno.ECONNRESET: "connection reset by peer",
    errno.EPIPE: PEER_GONE,
    errno.ENOTCONN: PEER_GONE,
    errno.EADDRINUSE: "address already in use",
    errno.ETIMEDOUT: "connection timed out",
    errno.EMSGSIZE: "message too long for the socket",
}


def socket_errors(label: str, reasons: Mapping[int, str] | None = None) -> Any:
    """`with socket_errors(label):` turns every OSError inside into the one-line error
    naming the socket; `reasons` are a mechanism's own words for some errnos."""
    return naming(label, reasons={**REASONS, **(reasons or {})})


def new_socket(family: int, kind: int) -> socket.socket:
    """A non-blocking socket, closed on exec."""
    sock = socket.socket(family, kind | socket.SOCK_CLOEXEC)
    sock.setblocking(False)
    return sock


# --- connections -------------------------------------------------------------


def connect_socket(
    sock: socket.socket,
    address: Any,
    *,
    label: str,
    timeout: float | Deadline | None,
    reasons: Mapping[int, str] | None = None,
) -> None:
    """Connect, waiting at most `timeout` seconds (Timeout, exit 124).

    A TCP connect in progress is waited for; a unix listener whose queue of
    connections is full (EAGAIN) is tried again with short pauses. Refused,
    reset, unreachable... are one line naming `label`.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    wait = 0.001
    with socket_errors(label, reasons):
        while True:
            try:
                sock.connect(address)
                return
            except BlockingIOError as err:
                if err.errno == errno.EINPROGRESS:
                    _finish_connect(sock, label, deadline)
                    return
            # EAGAIN: the listener's queue is full; it takes no wakeup to wait on
            if deadline.expired():
                raise deadline.error(label)
            left = deadline.remaining()
            pause(wait if left is None else min(wait, left))
            wait = min(wait * 2, 0.05)


def _finish_connect(sock: socket.socket, label: str, deadline: Deadline) -> None:
    wait_fd(sock.fileno(), select.POLLOUT, timeout=deadline, obj=label)
    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


def start_listening(sock: socket.socket, *, label: str, backlog: int = BACKLOG) -> None:
    """listen() on a bound socket, its errors as one line naming it."""
    with socket_errors(label):
        sock.listen(backlog)


def accept_connection(
    listener: socket.socket,
    *,
    label: str,
    timeout: float | Deadline | None,
    reasons: Mapping[int, str] | None = None,
) -> tuple[socket.socket, Any]:
    """The next connection (non-blocking) and the peer's address, waited for under
    --timeout, Ctrl-C and a closed stdout; `reasons` word accept's errors."""
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    with socket_errors(label, reasons):
        while True:
            wait_fd(
                listener.fileno(), select.POLLIN, timeout=deadline, obj=label, watch_stdout=True
            )
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue  # taken by another process, or gone before we took it
            conn.setblocking(False)
            return conn, peer


Handler = Callable[[socket.socket, Any], None]


def serve_connections(
    listener: socket.socket,
    handle: Handler,
    *,
    label: str,
    keep_open: bool = False,
    timeout: float | None = None,
    reasons: Mapping[int, str] | None = None,
) -> int:
    """Accept a connection and `handle(conn, peer)` it; close it after, however it ends.

    One connection, or with keep_open one after another until Ctrl-C or
    `timeout` seconds without a new connection (a quiet end, as
    `recv --follow --timeout`). With keep_open, a connection that fails (its
    peer reset it) is a warning line and the next one is taken; without, its
    error ends recv. A --timeout inside a connection (idle) always ends it.
    Returns how many connections were served. `reasons`: accept's errors in the
    mechanism's words.
    """
    from ipctool.runner import warn

    served = 0
    while True:
        try:
            conn, peer = accept_connection(
                listener, label=label, timeout=timeout, reasons=reasons
            )
        except Timeout:
            if keep_open:
                return served
            raise
        try:
            handle(conn, peer)
        except Timeout:
            raise
        except IpcError as err:
            if not keep_open:
                raise
            warn(label, f"a connection ended: {err.reason}")
        finally:
            conn.close()
        served += 1
        if not keep_open:
            return served


def half_close(sock: socket.socket) -> None:
    """Say end of data to the peer (shutdown for writing); a peer already gone
    is left for the next read to tell."""
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as err:
        if err.errno != errno.ENOTCONN:
            raise


# --- byte streams ------------------------------------------------------------


def send_stream(
    sock: socket.socket,
    *,
    label: str,
    timeout: float | None = None,
    data: bytes | None = None,
    reply: bool = True,
) -> None:
    """stdin (or `data`) to the connected peer, then a half-close, then the peer's
    reply to stdout until it closes (as the lecture's TCP client reads the echo).

    What the peer sends while stdin still flows is written out meanwhile (or
    dropped, without `reply`); without `reply`, send ends at the half-close.
    `timeout` is the longest idle time, either way.
    """
    from ipctool.relay import Backflow, relay

    back = Backflow(sock.fileno(), 1 if reply else None, label)
    source = 0 if data is None else _memory_file(data)
    try:
        relay(
            source,
            sock.fileno(),
            idle_timeout=timeout,
            obj=label,
            peer_gone=PEER_GONE,
            backflow=back,
        )
    finally:
        if source:
            os.close(source)
    with socket_errors(label):
        half_close(sock)
    if reply and not back.done:
        relay(sock.fileno(), 1, idle_timeout=timeout, obj=label, watch_stdout=True)


def _memory_file(data: bytes) -> int:
    """--data as a file in memory: the relay sends it like any file (sendfile)."""
    fd = os.memfd_create("ipctool-data", os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def receive_stream(conn: socket.socket, *, label: str, timeout: float | None = None) -> int:
    """The peer's bytes to stdout until it closes (its end of data); the bytes moved."""
    from ipctool.relay import relay

    return relay(conn.fileno(), 1, idle_timeout=timeout, obj=label, watch_stdout=True)


# --- messages: datagrams and seqpacket records --------------------------------


class SocketOutlet:
    """send_messages' Outlet for a connected datagram or seqpacket socket: one
    send per message, so the receiver gets each whole, as it was cut; or, given
    an `address`, an unconnected datagram socket's sendto (a broadcast or
    multicast sender that takes answers from anyone).

    A full receiver (a unix datagram socket's queue, a seqpacket peer's buffer)
    is waited for up to `timeout` per message (exit 124), or with nowait is
    exit 5. Too large for the socket: exit 7; the receiver gone: its error.
    """

    def __init__(
        self,
        sock: socket.socket,
        label: str,
        *,
        nowait: bool = False,
        timeout: float | None = None,
        reasons: Mapping[int, str] | None = None,
        address: Any = None,
    ) -> None:
        self.sock = sock
        self.label = label
        self.nowait = nowait
        self.timeout = timeout
        self.reasons = reasons
        self.send: Callable[[bytes], int] = (
            sock.send if address is None else lambda message: sock.sendto(message, address)
        )

    def put(self, message: bytes, channel: int | None = None) -> None:
        self.put_many([message])

    def put_many(self, messages: list[bytes]) -> None:
        send = self.send
        with socket_errors(self.label, self.reasons):
            for message in messages:
                try:
                    send(message)
                except BlockingIOError:
                    self._put_waiting(message)

    def _put_waiting(self, message: bytes) -> None:
        if self.nowait:
            raise WouldBlock(self.label, "the receiver's queue is full")
        when_ready(
            self.sock.fileno(),
            select.POLLOUT,
            lambda: self.send(message),
            busy=BlockingIOError,
            timeout=self.timeout,
            obj=self.label,
        )

    def try_put(self, message: bytes, channel: int | None = None) -> None:
        with socket_errors(self.label, self.reasons):
            self.send(message)

    def take_all(self, channel: int) -> None:
        pass  # no channels: a socket keeps nothing once both ends are gone


Receive = Callable[[], Message]


class SocketInbox:
    """receive()'s Inbox for a bound datagram socket or a seqpacket connection.

    Each message is read into one reused buffer of `bufsize` bytes (the largest
    message the mechanism can carry, plus one: a message that fills it was cut
    short, an error) and copied out at its own size. meta (what --json shows)
    is `sender(address)`, the plugin's way of writing a sender's address, or
    None. `ends`: a connection, whose peer closing ends recv (Ended); a
    message of no bytes cannot be told from that, and ends it too.

    A socket's queue goes with the socket: messages recv could not write
    cannot go back (put_back says so, and recv reports them lost).
    """

    def __init__(
        self,
        sock: socket.socket,
        label: str,
        *,
        bufsize: int,
        sender: Callable[[Any], Any] | None = None,
        ends: bool = False,
        receive: Receive | None = None,
    ) -> None:
        self.sock = sock
        self.label = label
        self.buffer = receive_buffer(bufsize)
        self.view = memoryview(self.buffer)
        self.sender = sender or _no_meta
        self.ends = ends
        self.receive = receive or self._receive

    def _receive(self) -> Message:
        n, address = self.sock.recvfrom_into(self.buffer)
        if n == 0 and self.ends:
            raise Ended(PEER_GONE)
        if n == len(self.buffer):
            raise IpcError(self.label, f"a message of more than {n - 1} bytes was cut short")
        return self.view[:n].tobytes(), self.sender(address)

    def poller(self, channel: int | None = None) -> tuple[Receive, type[BaseException]]:
        return self.receive, BlockingIOError

    def wait(self, channel: int | None, timeout: float | None) -> Message:
        deadline = Deadline(timeout)
        while True:
            wait_fd(
                self.sock.fileno(),
                select.POLLIN,
                timeout=deadline,
                obj=self.label,
                watch_stdout=True,
            )
            try:
                return self.receive()
            except BlockingIOError:
                continue  # taken by another reader of the same socket

    def recover(self, exc: BaseException) -> bool:
        return False

    def put_back(self, messages: list[Message]) -> None:
        raise IpcError(self.label, "a socket keeps no messages once recv ends")

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, Ended):  # in the middle of a --stream
            return IpcError(self.label, f"{exc} before the end of the stream")
        if isinstance(exc, OSError):
            from ipctool.errors import from_os_error

            return from_os_error(self.label, exc, REASONS.get(exc.errno or 0))
        return exc


def receive_buffer(size: int) -> bytearray | mmap.mmap:
    """A buffer for the largest message: anonymous memory above 1 MiB, so that only
    the pages a message fills are ever touched (a bytearray is zeroed whole)."""
    if size <= 1 << 20:
        return bytearray(size)
    import mmap

    return mmap.mmap(-1, size)


def _no_meta(address: Any) -> None:
    return None


@contextmanager
def closing(sock: socket.socket) -> Iterator[socket.socket]:
    """The socket, closed however the block ends (a Ctrl-C inside included)."""
    try:
        yield sock
    finally:
        sock.close()
