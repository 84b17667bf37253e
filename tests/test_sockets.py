"""The core's socket machinery (ipctool.sockets, ipctool.sockdiag) on real sockets,
apart from any plugin: what tcp and udp will stand on as unix does."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from ipctool.errors import IpcError, NotFound, Timeout, TooLarge, UsageError
from ipctool.messages import Ended
from ipctool.sockdiag import attributes
from ipctool.sockets import (
    SocketInbox,
    SocketOutlet,
    connect_socket,
    new_socket,
    send_stream,
    serve_connections,
)
from ipctool.testing import unique_path


@pytest.fixture
def listener() -> socket.socket:
    path = unique_path(".sock")
    sock = new_socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(0)  # room for one connection the listener has not accepted
    yield sock
    sock.close()
    os.unlink(path)


def test_connect_to_a_full_listener_waits_then_times_out(listener: socket.socket) -> None:
    path = listener.getsockname()
    first = new_socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connect_socket(first, path, label="s", timeout=1)
    second = new_socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(Timeout) as caught:  # its queue is full: EAGAIN, tried again
        connect_socket(second, path, label="s", timeout=0.2)
    assert caught.value.line("unix") == "ipctool: unix: s: timed out after 0.2 s"
    listener.accept()[0].close()  # room again: the next try gets in
    connect_socket(second, path, label="s", timeout=5)
    first.close()
    second.close()


def test_connect_errors_are_one_line_with_their_exit_code() -> None:
    sock = new_socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(NotFound) as caught:
        connect_socket(sock, unique_path(".none"), label="x", timeout=1)
    assert caught.value.exit_code == 3
    dgram = new_socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = unique_path(".sock")
    stream = socket.socket(socket.AF_UNIX)
    stream.bind(path)
    stream.listen()
    try:
        with pytest.raises(UsageError):  # EPROTOTYPE: a socket of another type
            connect_socket(dgram, path, label="x", timeout=1)
    finally:
        stream.close()
        os.unlink(path)
        sock.close()
        dgram.close()


def test_keep_open_warns_about_a_failed_connection_and_goes_on(
    listener: socket.socket, capfd: pytest.CaptureFixture[str]
) -> None:
    path = listener.getsockname()
    seen: list[bytes] = []

    def handle(conn: socket.socket, peer: object) -> None:
        conn.setblocking(True)  # serve hands over non-blocking connections
        data = conn.recv(100)
        if data == b"bad":
            raise IpcError("s", "this one failed")
        seen.append(data)

    def clients() -> None:
        for word in (b"bad", b"good"):
            with socket.socket(socket.AF_UNIX) as c:
                c.connect(path)
                c.sendall(word)

    thread = threading.Thread(target=clients)
    thread.start()
    served = serve_connections(listener, handle, label="s", keep_open=True, timeout=1)
    thread.join()
    assert (served, seen) == (2, [b"good"])
    assert capfd.readouterr().err == "ipctool: s: warning: a connection ended: this one failed\n"


def test_one_connection_error_ends_serve(listener: socket.socket) -> None:
    def handle(conn: socket.socket, peer: object) -> None:
        raise IpcError("s", "broken")

    with socket.socket(socket.AF_UNIX) as client:
        client.connect(listener.getsockname())
        with pytest.raises(IpcError, match="broken"):
            serve_connections(listener, handle, label="s")
    with pytest.raises(Timeout):  # nobody comes: without --keep-open a timeout is an error
        serve_connections(listener, handle, label="s", timeout=0.05)


def test_send_stream_sends_data_and_half_closes() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    data = os.urandom(3 << 20)
    got: list[bytes] = []

    def peer() -> None:
        chunks = []
        while chunk := theirs.recv(1 << 16):
            chunks.append(chunk)
        got.append(b"".join(chunks))  # the half-close came: end of data

    thread = threading.Thread(target=peer)
    thread.start()
    send_stream(ours, label="s", data=data, reply=False, timeout=10)
    thread.join(10)
    assert got == [data]
    ours.close()
    theirs.close()


def test_outlet_and_inbox_keep_boundaries_and_say_the_end() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for sock in (ours, theirs):
        sock.setblocking(False)
    outlet = SocketOutlet(ours, "s", nowait=True)
    outlet.put_many([b"one", b"", b"three"])
    inbox = SocketInbox(theirs, "s", bufsize=100, ends=True, sender=lambda a: "peer")
    receive, empty = inbox.poller()
    assert receive() == (b"one", "peer")
    with pytest.raises(Ended):  # a record of no bytes reads as the end, as documented
        receive()
    assert receive() == (b"three", "peer")
    with pytest.raises(empty):
        receive()
    ours.close()
    with pytest.raises(Ended, match="the peer closed the connection"):
        receive()
    theirs.close()


def test_a_message_that_fills_the_buffer_was_cut_short() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.setblocking(False)
    ours.send(b"x" * 10)
    inbox = SocketInbox(theirs, "s", bufsize=10)
    with pytest.raises(IpcError, match="more than 9 bytes was cut short"):
        inbox.poller()[0]()
    ours.close()
    theirs.close()


def test_outlet_too_large_and_full() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    outlet = SocketOutlet(ours, "s", nowait=True)
    with pytest.raises(TooLarge):
        outlet.put(b"x" * (ours.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) + 1))
    from ipctool.errors import WouldBlock

    with pytest.raises(WouldBlock):  # nobody reads: the peer's queue fills
        for _ in range(10_000):
            outlet.put(b"y")
    waiting = SocketOutlet(ours, "s", timeout=0.05)
    with pytest.raises(Timeout):
        waiting.put(b"z")
    ours.close()
    theirs.close()


def test_sockdiag_attributes_are_split_at_their_alignment() -> None:
    payload = b"HEAD" + struct.pack("=HH", 5, 7) + b"a" + b"\0" * 3 + struct.pack("=HH", 8, 2)
    payload += b"bcde"
    assert attributes(payload, 4) == {7: b"a", 2: b"bcde"}
