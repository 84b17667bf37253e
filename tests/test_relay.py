"""relay(): exact bytes between real pipes, socketpairs, files and a terminal, by
every way the kernel offers (splice, sendfile, read/write), and every way it ends."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import tty
from pathlib import Path

import pytest
from conftest import wait_until_blocked
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipctool.errors import IpcError, Timeout
from ipctool.relay import relay

KINDS = ["pipe", "socket", "file"]


class Source:
    """An fd for relay to read, fed with `chunks` as separate writes by a writer
    that then closes its end (EOF). A file is written in full beforehand."""

    def __init__(self, kind: str, chunks: list[bytes], directory: str) -> None:
        self.keep: list[object] = []
        self.thread: threading.Thread | None = None
        if kind == "file":
            path = os.path.join(directory, "source")
            Path(path).write_bytes(b"".join(chunks))
            self.fd = os.open(path, os.O_RDONLY)
            return
        if kind == "pipe":
            self.fd, write_end = os.pipe()
        else:
            ours, theirs = socket.socketpair()
            self.keep += [ours, theirs]
            self.fd, write_end = ours.fileno(), theirs.detach()

        def feed() -> None:
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(write_end, view) :]
            os.close(write_end)

        self.thread = threading.Thread(target=feed, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread:
            self.thread.join(10)
        if not self.keep:
            os.close(self.fd)
        for s in self.keep:
            s.close()


class Destination:
    """An fd for relay to write; `received()` is everything that arrived."""

    def __init__(
        self, kind: str, directory: str, read_size: int = 1 << 16, append: bool = False
    ) -> None:
        self.kind, self.parts, self.keep = kind, [], []
        self.thread: threading.Thread | None = None
        if kind == "file":
            self.path = os.path.join(directory, "destination")
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_APPEND if append else 0)
            self.fd = os.open(self.path, flags, 0o600)
            return
        if kind == "pipe":
            read_end, self.fd = os.pipe()
        elif kind == "socket":
            ours, theirs = socket.socketpair()
            self.keep.append(ours)
            self.fd, read_end = ours.fileno(), theirs.detach()
        else:  # a terminal in raw mode: bytes pass unchanged
            read_end, self.fd = os.openpty()
            tty.setraw(self.fd)

        def collect() -> None:
            while True:
                try:
                    part = os.read(read_end, read_size)
                except OSError:  # EIO: a terminal's other side closed
                    part = b""
                if not part:
                    break
                self.parts.append(part)
            os.close(read_end)

        self.thread = threading.Thread(target=collect, daemon=True)
        self.thread.start()

    def received(self) -> bytes:
        """Close our end (EOF for the collector) and return what came."""
        if self.keep:
            self.keep[0].close()
        else:
            os.close(self.fd)
        if self.kind == "file":
            return Path(self.path).read_bytes()
        self.thread.join(10)
        return b"".join(self.parts)


def through(
    src_kind: str, dst_kind: str, chunks: list[bytes], *, append: bool = False, **relay_args
) -> tuple[int, bytes]:
    with tempfile.TemporaryDirectory() as directory:
        source = Source(src_kind, chunks, directory)
        destination = Destination(dst_kind, directory, append=append)
        try:
            moved = relay(source.fd, destination.fd, obj="peer", **relay_args)
        finally:
            source.close()
        return moved, destination.received()


chunkings = st.lists(st.binary(max_size=3000), max_size=12)


@pytest.mark.parametrize("dst_kind", KINDS)
@pytest.mark.parametrize("src_kind", KINDS)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=chunkings)
def test_any_bytes_any_chunking_arrive_exactly(
    src_kind: str, dst_kind: str, chunks: list[bytes]
) -> None:
    data = b"".join(chunks)
    assert through(src_kind, dst_kind, chunks) == (len(data), data)


MIB = os.urandom(1 << 20)
PATHS = [(s, d) for s in KINDS for d in KINDS] + [("pipe", "tty"), ("socket", "tty")]


@pytest.mark.parametrize(("src_kind", "dst_kind"), PATHS, ids="-".join)
def test_one_mib_of_random_bytes(src_kind: str, dst_kind: str) -> None:
    """splice (a pipe at either end), sendfile (from a file), read/write (the rest)."""
    chunks = [MIB[i : i + 100_000] for i in range(0, len(MIB), 100_000)]
    moved, got = through(src_kind, dst_kind, chunks)
    assert moved == len(MIB)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(MIB).hexdigest()


@pytest.mark.parametrize("src_kind", ["pipe", "file"])
def test_append_only_file_falls_back_to_copying(src_kind: str) -> None:
    """splice and sendfile refuse a file opened O_APPEND: relay writes instead."""
    moved, got = through(src_kind, "file", [MIB], append=True)
    assert (moved, got == MIB) == (len(MIB), True)


@pytest.mark.parametrize("src_kind", KINDS)
def test_empty_source_is_a_clean_end(src_kind: str) -> None:
    assert through(src_kind, "pipe", []) == (0, b"")


def test_partial_writes_into_a_slow_reader() -> None:
    """3 MiB into a pipe read 1000 bytes at a time, and into a socket with a small
    send buffer: every write and splice that takes only part is resumed."""
    data = os.urandom(3 << 20)
    with tempfile.TemporaryDirectory() as directory:
        for src_kind, dst_kind in (("socket", "pipe"), ("pipe", "pipe"), ("file", "socket")):
            source = Source(src_kind, [data], directory)
            destination = Destination(dst_kind, directory, read_size=1000)
            if dst_kind == "socket":
                destination.keep[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            try:
                assert relay(source.fd, destination.fd, obj="peer") == len(data)
            finally:
                source.close()
            assert destination.received() == data, (src_kind, dst_kind)


def test_sockets_are_left_blocking_as_they_were() -> None:
    with tempfile.TemporaryDirectory() as directory:
        source = Source("socket", [b"abc"], directory)
        destination = Destination("socket", directory)
        relay(source.fd, destination.fd, obj="peer")
        assert source.keep[0].getblocking() and destination.keep[0].getblocking()
        source.close()
        assert destination.received() == b"abc"


def test_idle_timeout_after_what_came() -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"before the silence")
    with tempfile.TemporaryDirectory() as directory:
        destination = Destination("pipe", directory)
        try:
            with pytest.raises(Timeout) as caught:
                relay(read_end, destination.fd, idle_timeout=0.05, obj="/tmp/f")
        finally:
            os.close(read_end)
            os.close(write_end)
        assert caught.value.line("fifo") == "ipctool: fifo: /tmp/f: timed out after 0.05 s"
        assert destination.received() == b"before the silence"


def test_reader_closing_names_the_peer() -> None:
    """The destination's reader goes away: while relay waits for data (seen at
    once, not at the next write), and while it writes."""
    src_read, src_write = os.pipe()
    dst_read, dst_write = os.pipe()
    os.close(dst_read)
    try:
        with pytest.raises(IpcError) as caught:  # nothing to move yet: seen while waiting
            relay(src_read, dst_write, obj="/tmp/f", peer_gone="reader closed the FIFO")
        assert caught.value.line("fifo") == "ipctool: fifo: /tmp/f: reader closed the FIFO"
        assert caught.value.exit_code == 1
        os.write(src_write, b"x" * 1000)
        with pytest.raises(IpcError) as caught:  # EPIPE from the write itself
            relay(src_read, dst_write, obj="/tmp/f", peer_gone="reader closed the FIFO")
        assert caught.value.reason == "reader closed the FIFO"
    finally:
        for fd in (src_read, src_write, dst_write):
            os.close(fd)
    ours, theirs = socket.socketpair()
    src_read, src_write = os.pipe()
    theirs.close()
    os.write(src_write, b"y" * 1000)
    try:
        with pytest.raises(IpcError) as caught:
            relay(src_read, ours.fileno(), obj="sock")
        assert caught.value.line("unix") in (
            "ipctool: unix: sock: the other end was closed",
            "ipctool: unix: sock: connection reset by peer",
        )
    finally:
        ours.close()
        os.close(src_read)
        os.close(src_write)


DRIVER = r"""
import os, sys
from ipctool import interrupts
from ipctool.errors import IpcError, StdoutClosed
from ipctool.relay import relay

if sys.argv[1] == "stdin":
    read_end = 0
else:
    read_end, write_end = os.pipe()  # a source that stays silent
if sys.argv[1] == "data":
    os.write(write_end, b"some bytes")
try:
    with interrupts.verb_phase():
        relay(read_end, 1, obj="pipe", watch_stdout=True)
except KeyboardInterrupt:
    sys.exit(130)
except StdoutClosed:
    sys.exit(141)
except IpcError as err:
    print(err.line("test"), file=sys.stderr)
    sys.exit(err.exit_code)
"""


def driver(*args: str, stdout: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, *args], stdout=stdout, stderr=subprocess.PIPE
    )


def test_ctrl_c_ends_a_relay() -> None:
    proc = driver("silent", stdout=subprocess.DEVNULL)
    wait_until_blocked(proc.pid, ("poll", "ppoll"))
    proc.send_signal(signal.SIGINT)
    assert (proc.wait(timeout=10), proc.stderr.read()) == (130, b"")


@pytest.mark.parametrize("first", ["silent", "data"])
def test_our_stdout_closing_is_quiet(first: str) -> None:
    proc = driver(first, stdout=subprocess.PIPE)
    if first == "data":
        assert proc.stdout.read(10) == b"some bytes"
    wait_until_blocked(proc.pid, ("poll", "ppoll"))
    proc.stdout.close()  # our stdout's reader goes away while relay waits for data
    assert (proc.wait(timeout=10), proc.stderr.read()) == (141, b"")


def test_stdin_errors_name_stdin() -> None:
    shell = f'{sys.executable} -c "$DRIVER" stdin <&-'  # stdin closed
    done = subprocess.run(
        ["bash", "-c", shell], env={**os.environ, "DRIVER": DRIVER}, capture_output=True
    )
    assert (done.returncode, done.stderr) == (1, b"ipctool: test: stdin: bad file descriptor\n")


def test_relay_in_another_thread() -> None:
    """Only the main thread sees signals; elsewhere relay just moves bytes."""
    results = []
    worker = threading.Thread(target=lambda: results.append(through("socket", "pipe", [MIB])))
    worker.start()
    worker.join(30)
    assert results == [(len(MIB), MIB)]


def test_socket_into_a_file_opened_for_appending() -> None:
    """Neither end a pipe: relay splices through a pipe of its own; a destination
    that refuses splice (O_APPEND) gets what was in that pipe, then the rest by copy."""
    moved, got = through("socket", "file", [MIB[:300_000], MIB[300_000:]], append=True)
    assert (moved, got == MIB) == (len(MIB), True)


def echo_peer(sock: socket.socket) -> threading.Thread:
    """A peer that sends back all it reads, and reads no more while its answer waits
    (the lecture's echo server in a loop)."""

    def serve() -> None:
        while data := sock.recv(1 << 16):
            sock.sendall(data)
        sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("dst_kind", ["pipe", "file", None])
def test_backflow_takes_an_echo_while_sending(dst_kind: str | None) -> None:
    """4 MiB to an echo peer: far more than both socket buffers hold, so the peer
    stops reading until its echo is taken. The backflow takes it while relay
    waits for room; without it neither side would move again."""
    from ipctool.relay import Backflow

    data = os.urandom(4 << 20)
    ours, theirs = socket.socketpair()
    peer = echo_peer(theirs)
    with tempfile.TemporaryDirectory() as directory:
        source = Source("pipe", [data], directory)
        destination = Destination(dst_kind, directory) if dst_kind else None
        back = Backflow(ours.fileno(), destination.fd if destination else None, "peer")
        try:
            assert relay(source.fd, ours.fileno(), obj="peer", backflow=back) == len(data)
            ours.shutdown(socket.SHUT_WR)
            if not back.done:
                rest = destination.fd if destination else os.open(os.devnull, os.O_WRONLY)
                relay(ours.fileno(), rest, obj="peer")
        finally:
            source.close()
            peer.join(10)
            ours.close()
        if destination is not None:
            echoed = destination.received()
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(data).digest()


def test_backflow_reports_a_reset_and_a_closed_stdout() -> None:
    from ipctool.relay import Backflow

    ours, theirs = socket.socketpair()
    ours.sendall(b"unread by the peer")  # closing with unread data resets the connection
    theirs.close()
    with pytest.raises(IpcError) as caught:
        Backflow(ours.fileno(), None, "/tmp/s").step()
    assert caught.value.line("unix") == "ipctool: unix: /tmp/s: connection reset by peer"
    ours.close()
    ours, theirs = socket.socketpair()
    theirs.sendall(b"reply")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with pytest.raises(BrokenPipeError):  # StdoutClosed: our stdout's reader left
            Backflow(ours.fileno(), write_end, "/tmp/s").step()
    finally:
        os.close(write_end)
        ours.close()
        theirs.close()
