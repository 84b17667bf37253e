"""tcp against the lecture's TCP client and echo server, socat, nc and Python peers,
on loopback and between two network namespaces; with faults, bad targets,
inspect and clean of real sockets.

Listeners bind port 0 and the test reads the port they announce (IPCTOOL_READY_FD),
so parallel runs never meet; only the lecture's C server, which cannot say its
port, gets a port that was free when the test started (free_port).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from ipctool import inetdiag
from ipctool.testing import (
    assert_one_line_error,
    check_record,
    command,
    free_port,
    run,
    start_receiver,
    until,
    wait_until_blocked,
)
from ipctool.testkit import run_tag, worker

IPCTOOL = " ".join(command())


def listen(*args: str, stdout: object = subprocess.PIPE) -> tuple[subprocess.Popen, int]:
    """ipctool tcp recv ARGS, once it listens; and the port it announced. On port 0
    recv says the port it got on stderr: that line is read here."""
    started = start_receiver(
        "tcp", "recv", *args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE
    )
    port = int(started.target.rpartition(":")[2])
    if args[0].endswith(":0"):
        said = started.process.stderr.readline().decode()
        assert said == f"ipctool: tcp: listening on {started.target}\n", said
    return started.process, port


def sockets() -> list[inetdiag.InetSock]:
    return inetdiag.table(socket.IPPROTO_TCP).sockets


def listening_on(port: int) -> bool:
    return any(s.listening and s.local[1] == port for s in sockets())


def connections_at(port: int) -> list[inetdiag.InetSock]:
    return [s for s in sockets() if s.local[1] == port and s.state == inetdiag.ESTABLISHED]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def python_peer(code: str) -> subprocess.Popen:
    """A Python program as a peer; it prints 'ready' (or its port) once it is."""
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def ready(peer: subprocess.Popen) -> bytes:
    line = peer.stdout.readline()
    assert line, peer.stderr.read()
    return line.strip()


def stop(*procs: subprocess.Popen) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def linger_zero(sock: socket.socket) -> None:
    """close() then resets the connection (RST) instead of ending it (FIN)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --- the lecture's TCP client and echo server ----------------------------------------


def test_the_lectures_echo_server_answers_ipctool_send(compile_peer) -> None:
    port = free_port()
    server = subprocess.Popen([str(compile_peer("tcp_server.c", PORT=str(port)))])
    try:
        until(lambda: listening_on(port), server, "the lecture's server listens")
        sent = run("tcp", "send", f"127.0.0.1:{port}", input=b"hello, lecture\n")
        assert (sent.code, sent.stdout, sent.err) == (0, b"hello, lecture\n", "")
        again = run("tcp", "send", f"localhost:{port}", "--data", "twice")  # a name, resolved
        assert (again.code, again.stdout) == (0, b"twice"), again.err
    finally:
        stop(server)


def test_the_lectures_client_talks_to_ipctool_recv(compile_peer) -> None:
    """The client writes, then reads until the server closes: recv --reply answers
    and half-closes, so the client ends, and recv prints what it wrote."""
    receiver, port = listen("127.0.0.1:0", "--reply", "Hello, client!\n")
    client = subprocess.run(
        [str(compile_peer("tcp_client.c", PORT=str(port)))], capture_output=True, timeout=30
    )
    assert (client.returncode, client.stdout) == (0, b"Hello, client!\n"), client.stderr
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out, err) == (0, b"Hello void!\n", b"")


# --- socat and nc, both ways ---------------------------------------------------------


def test_socat_sends_to_ipctool() -> None:
    receiver, port = listen("127.0.0.1:0")
    data = os.urandom(300_000)
    subprocess.run(["socat", "-u", "-", f"TCP:127.0.0.1:{port}"], input=data, check=True)
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out == data, err) == (0, True, b"")


def test_ipctool_sends_to_socat(tmp_path: Path) -> None:
    port = free_port()
    got = tmp_path / "got"
    with open(got, "wb") as out:
        listener = subprocess.Popen(
            ["socat", "-u", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "-"], stdout=out
        )
    try:
        until(lambda: listening_on(port), listener, "socat listens")
        data = os.urandom(300_000)
        sent = run("tcp", "send", f"127.0.0.1:{port}", input=data)
        assert (sent.code, sent.err) == (0, "")
        assert listener.wait(timeout=10) == 0
        assert got.read_bytes() == data
    finally:
        stop(listener)


def test_nc_both_ways() -> None:
    port = free_port()
    listener = subprocess.Popen(["nc", "-l", "127.0.0.1", str(port)], stdout=subprocess.PIPE)
    try:
        until(lambda: listening_on(port), listener, "nc listens")
        assert run("tcp", "send", f"127.0.0.1:{port}", input=b"to nc\n").code == 0
        assert listener.communicate(timeout=10)[0] == b"to nc\n"
    finally:
        stop(listener)
    receiver, port = listen(":0")
    subprocess.run(["nc", "-N", "127.0.0.1", str(port)], input=b"from nc\n", check=True, timeout=10)
    assert receiver.communicate(timeout=10)[0] == b"from nc\n"


def test_send_prints_an_echo_servers_reply_of_any_size() -> None:
    """socat as an echo server; 4 MiB is far more than the socket buffers hold, so
    the echo must be taken while stdin is still being sent."""
    port = free_port()
    server = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "EXEC:cat"])
    try:
        until(lambda: listening_on(port), server, "socat listens")
        data = os.urandom(4 << 20)
        sent = run("tcp", "send", f"127.0.0.1:{port}", input=data, timeout=60)
        assert (sent.code, sent.err) == (0, "")
        assert hashlib.sha256(sent.stdout).digest() == hashlib.sha256(data).digest()
    finally:
        stop(server)


def test_no_reply_ends_at_the_half_close() -> None:
    """A peer that never closes: send --no-reply still ends once stdin is sent."""
    peer = python_peer(
        "import socket, time\n"
        "s = socket.create_server(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True)\n"
        "c, _ = s.accept(); data = b''\n"
        "while chunk := c.recv(65536): data += chunk\n"
        "print(len(data), flush=True); time.sleep(60)\n"
    )
    try:
        port = int(ready(peer))
        sent = run("tcp", "send", f"127.0.0.1:{port}", "--no-reply", input=b"x" * 1000)
        assert (sent.code, sent.err) == (0, "")
        assert ready(peer) == b"1000"
    finally:
        stop(peer)


def test_reply_goes_to_every_connection_with_keep_open() -> None:
    receiver, port = listen("127.0.0.1:0", "--keep-open", "--reply", "ok\n", "--timeout", "10")
    try:
        for word in (b"one ", b"two "):
            sent = run("tcp", "send", f"127.0.0.1:{port}", input=word)
            assert (sent.code, sent.stdout) == (0, b"ok\n"), sent.err
    finally:
        receiver.send_signal(signal.SIGINT)
    out, _ = receiver.communicate(timeout=10)
    assert (receiver.returncode, out) == (130, b"one two ")


# --- listening: where, which port, reuse ---------------------------------------------


def test_port_zero_is_reported_on_stderr_and_the_ready_fd() -> None:
    read_end, write_end = os.pipe()
    receiver = subprocess.Popen(
        command("tcp", "recv", ":0", "--ready-fd", str(write_end)),
        pass_fds=(write_end,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as announced:
        line = announced.readline()
    port = int(line.decode().removeprefix("127.0.0.1:"))
    assert port > 0 and listening_on(port)
    assert run("tcp", "send", f":{port}", input=b"x").code == 0
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out) == (0, b"x")
    assert err.decode() == f"ipctool: tcp: listening on 127.0.0.1:{port}\n"


def test_only_a_port_listens_on_loopback_and_every_interface_is_explicit() -> None:
    cases = {
        ":0": ("127.0.0.1", socket.AF_INET),
        "0.0.0.0:0": ("0.0.0.0", socket.AF_INET),
        "[::]:0": ("::", socket.AF_INET6),
        "[::1]:0": ("::1", socket.AF_INET6),
    }
    for target, (host, family) in cases.items():
        receiver, port = listen(target)
        try:
            mine = [s for s in sockets() if s.listening and s.local[1] == port]
            assert [(s.local[0], s.family) for s in mine] == [(host, family)], target
            if host == "::":  # every interface of both families: an IPv4 peer is taken
                assert run("tcp", "send", f"127.0.0.1:{port}", input=b"v4").code == 0
                assert receiver.communicate(timeout=10)[0] == b"v4"
        finally:
            stop(receiver)


def test_a_port_in_time_wait_is_listened_on_again_at_once() -> None:
    """SO_REUSEADDR: recv ends its connection first (Ctrl-C), so the port is left in
    TIME-WAIT; a new recv on that very port still binds."""
    receiver, port = listen("127.0.0.1:0")
    client = socket.create_connection(("127.0.0.1", port))
    until(lambda: any(s.local[1] == port and s.state == inetdiag.ESTABLISHED for s in sockets()))
    wait_until_blocked(receiver.pid)
    receiver.send_signal(signal.SIGINT)
    assert receiver.wait(timeout=10) == 130
    assert client.recv(10) == b""  # recv's end closed first
    client.close()
    until(lambda: any(s.local[1] == port and s.state == inetdiag.TIME_WAIT for s in sockets()))
    again, again_port = listen(f"127.0.0.1:{port}")
    assert again_port == port
    assert run("tcp", "send", f"127.0.0.1:{port}", input=b"again").code == 0
    assert again.communicate(timeout=10)[0] == b"again"


# --- integrity -------------------------------------------------------------------------


@pytest.mark.slow
def test_256_mib_sha256_identical(tmp_path: Path) -> None:
    source = tmp_path / "data"
    with open(source, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    received = tmp_path / "received"
    with open(received, "wb") as out:
        receiver, port = listen("127.0.0.1:0", stdout=out)
        feeder = subprocess.Popen(["cat", str(source)], stdout=subprocess.PIPE)  # a pipe: splice
        sender = subprocess.run(
            command("tcp", "send", f"127.0.0.1:{port}"), stdin=feeder.stdout, capture_output=True
        )
        feeder.wait()
        _, err = receiver.communicate(timeout=120)
    assert (sender.returncode, sender.stderr) == (0, b"")
    assert (receiver.returncode, err) == (0, b"")
    assert sha256(received) == sha256(source)


# --- faults ------------------------------------------------------------------------------


def test_reader_closing_early_is_quiet_and_the_sender_is_told() -> None:
    read_end, write_end = os.pipe()
    reader = subprocess.Popen(
        ["bash", "-c", f"{IPCTOOL} tcp recv 127.0.0.1:0 | head -c 10; exit ${{PIPESTATUS[0]}}"],
        env={**os.environ, "IPCTOOL_READY_FD": str(write_end)},
        pass_fds=(write_end,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as announced:
        port = int(announced.readline().rpartition(b":")[2])
    sender = subprocess.run(
        command("tcp", "send", f"127.0.0.1:{port}"),
        input=b"x" * (64 << 20),
        capture_output=True,
        timeout=60,
    )
    out, err = reader.communicate(timeout=10)
    assert (out, err) == (b"x" * 10, f"ipctool: tcp: listening on 127.0.0.1:{port}\n".encode())
    assert reader.returncode == 141  # recv's own stdout closed: quiet
    assert sender.returncode == 1, sender.stderr
    assert sender.stderr.decode() in (  # recv left unread bytes behind: reset, or closed
        f"ipctool: tcp: 127.0.0.1:{port}: the peer closed the connection\n",
        f"ipctool: tcp: 127.0.0.1:{port}: connection reset by peer\n",
    )


def test_sender_killed_mid_transfer_ends_recv_at_the_end_of_data() -> None:
    """A killed process's connection is closed by the kernel (FIN, as a close):
    recv writes what came and ends, exit 0, as nc and socat do."""
    receiver, port = listen("127.0.0.1:0")
    peer = python_peer(
        "import socket, signal\n"
        f"s = socket.create_connection(('127.0.0.1', {port}))\n"
        "s.sendall(b'partial'); print('sent', flush=True); signal.pause()\n"
    )
    assert ready(peer) == b"sent"
    peer.kill()
    peer.wait()
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out, err) == (0, b"partial", b"")


def test_receiver_killed_mid_transfer_is_a_named_error() -> None:
    receiver, port = listen("127.0.0.1:0", stdout=subprocess.DEVNULL)
    sender = subprocess.Popen(
        command("tcp", "send", f"127.0.0.1:{port}"),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    sender.stdin.write(b"y" * (1 << 20))
    sender.stdin.flush()
    until(lambda: any(s.peer[1] == port and s.state == inetdiag.ESTABLISHED for s in sockets()))
    receiver.kill()
    receiver.wait()
    try:
        sender.stdin.write(b"z" * (16 << 20))
        sender.stdin.close()
    except BrokenPipeError:
        pass
    err = sender.stderr.read().decode()
    assert sender.wait(timeout=10) == 1, err
    assert err in (
        f"ipctool: tcp: 127.0.0.1:{port}: the peer closed the connection\n",
        f"ipctool: tcp: 127.0.0.1:{port}: connection reset by peer\n",
    )


def test_a_peer_resetting_the_connection_is_an_error_for_send() -> None:
    """The peer closes with our bytes unread: the kernel resets the connection, and
    send's wait for the reply ends with that error, not a quiet end of data."""
    peer = python_peer(
        "import socket\n"
        "s = socket.create_server(('127.0.0.1', 0)); print(s.getsockname()[1], flush=True)\n"
        "c, _ = s.accept(); c.recv(1, socket.MSG_PEEK)\n"  # our bytes are there, unread
        "c.close()\n"
    )
    port = int(ready(peer))
    sent = run("tcp", "send", f"127.0.0.1:{port}", input=b"never read", timeout=20)
    peer.wait(timeout=10)
    assert_one_line_error(sent, "tcp", 1)
    assert sent.err == f"ipctool: tcp: 127.0.0.1:{port}: connection reset by peer\n"


def test_a_peer_resetting_the_connection_is_an_error_for_recv() -> None:
    receiver, port = listen("127.0.0.1:0", stdout=subprocess.DEVNULL)
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"some bytes, then a reset")
        linger_zero(client)
    _, err = receiver.communicate(timeout=10)
    assert receiver.returncode == 1, err
    assert err.decode() == f"ipctool: tcp: 127.0.0.1:{port}: connection reset by peer\n"


def test_connection_refused_and_unresolvable_hosts() -> None:
    port = free_port()
    refused = run("tcp", "send", f"127.0.0.1:{port}", input=b"x")
    assert_one_line_error(refused, "tcp", 3)
    assert refused.err.endswith(f"127.0.0.1:{port}: connection refused: nothing is listening\n")
    try:  # what this machine's resolver says decides the code: no such name, or not now
        socket.getaddrinfo("no-such-host.invalid", 80)
        pytest.fail("no-such-host.invalid resolves here")
    except socket.gaierror as err:
        expected = 2 if err.errno in (socket.EAI_NONAME, socket.EAI_NODATA) else 3
    unknown = run("tcp", "send", "no-such-host.invalid:80", input=b"x")
    assert_one_line_error(unknown, "tcp", expected)
    assert "no-such-host.invalid does not resolve" in unknown.err


def test_a_port_in_use_is_refused() -> None:
    first, port = listen("127.0.0.1:0")
    try:
        second = run("tcp", "recv", f"127.0.0.1:{port}", "--timeout", "5")
        assert_one_line_error(second, "tcp", 6)
        assert "address already in use" in second.err
    finally:
        stop(first)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_listening_ends_recv_and_frees_the_port(sig: int, code: int) -> None:
    receiver, port = listen("127.0.0.1:0")
    wait_until_blocked(receiver.pid)
    receiver.send_signal(sig)
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out, err) == (code, b"", b"")
    assert not listening_on(port)


def test_timeout_with_nobody_connecting() -> None:
    result = run("tcp", "recv", "127.0.0.1:0", "--timeout", "0.5")
    said, error = result.err.splitlines()  # the port it got, then the error
    address = said.removeprefix("ipctool: tcp: listening on ")
    assert result.code == 124 and error == f"ipctool: tcp: {address}: timed out after 0.5 s"
    quiet = run("tcp", "recv", "127.0.0.1:0", "--keep-open", "--timeout", "0.5")
    assert quiet.code == 0  # --keep-open: that long without a peer ends it, quietly
    assert quiet.err.startswith("ipctool: tcp: listening on ") and quiet.err.count("\n") == 1


def test_connect_timeout_when_the_listener_takes_no_more() -> None:
    """A listener whose queue is full drops new connection requests: connect waits,
    and --timeout ends it (exit 124)."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        queued = socket.create_connection(("127.0.0.1", port))  # fills the queue
        try:
            result = run("tcp", "send", f"127.0.0.1:{port}", "--timeout", "0.5", input=b"x")
        finally:
            queued.close()
    assert_one_line_error(result, "tcp", 124)
    assert result.err == f"ipctool: tcp: 127.0.0.1:{port}: timed out after 0.5 s\n"


def test_no_descriptor_leaks_across_100_failed_connections() -> None:
    """--keep-open: 100 connections that are reset or closed at once; recv's
    descriptors are the same after them, and it still serves the next."""
    receiver, port = listen("127.0.0.1:0", "--keep-open", stdout=subprocess.PIPE)
    try:
        wait_until_blocked(receiver.pid)
        before = fd_count(receiver.pid)
        for i in range(100):
            with socket.create_connection(("127.0.0.1", port)) as client:
                if i % 2:
                    client.sendall(b"cut short")
                    linger_zero(client)
        until(lambda: not connections_at(port), receiver, "every connection handled")
        wait_until_blocked(receiver.pid)
        assert fd_count(receiver.pid) == before
        assert run("tcp", "send", f"127.0.0.1:{port}", input=b"still here").code == 0
    finally:
        receiver.send_signal(signal.SIGINT)
        out, err = receiver.communicate(timeout=10)
    assert receiver.returncode == 130
    assert out.endswith(b"still here")
    warnings = err.decode().splitlines()
    assert all("warning: a connection ended: connection reset by peer" in w for w in warnings)


def test_bad_targets() -> None:
    for args, words in (
        (("send", ":0"), "only a listener takes port 0"),
        (("send", ":65536"), "out of range"),
        (("recv", "127.0.0.1:65536"), "out of range"),
        (("send", "127.0.0.1:x"), "not a number"),
        (("send", "[::1"), "closing ]"),
        (("send", "[::1]"), "no port"),
        (("send", "::1:80"), "goes in brackets"),
        (("send", "[localhost]:80"), "not an IPv6 address"),
        (("recv", "0.0.0.0"), "0.0.0.0:PORT listens on every interface"),
        (("recv", "4242"), ":4242 listens on loopback"),
        (("send", "0.0.0.0:80"), "every interface of a listener"),
        (("send", "[::]:80"), "every interface of a listener"),
        (("send", "127.0.0.1:"), "no port"),
        (("send", ""), "no address"),
        (("recv", "192.0.2.1:0"), "not an address of this host"),  # TEST-NET-1, never ours
    ):
        result = run("tcp", *args, "--timeout", "5", input=b"x")
        assert_one_line_error(result, "tcp", 2)
        assert words in result.err, result.err


def test_a_service_name_is_a_port() -> None:
    from ipctool.inet import parse_host_port

    assert parse_host_port("localhost:http", listening=False).port == 80


def test_closed_stdin_connects_to_nothing() -> None:
    receiver, port = listen("127.0.0.1:0")
    try:
        closed = subprocess.run(
            ["bash", "-c", f"{IPCTOOL} tcp send 127.0.0.1:{port} <&-"], capture_output=True
        )
        assert closed.returncode == 1 and b"stdin" in closed.stderr
        wait_until_blocked(receiver.pid)
        assert receiver.poll() is None  # never connected
    finally:
        stop(receiver)


# --- two hosts: two network namespaces joined by a veth pair ---------------------------


class Namespaces:
    """Two network namespaces, A (10.213.0.1, fd00:213::1) and B (10.213.0.2,
    fd00:213::2), joined by a veth pair; each has its loopback up."""

    ADDRESSES: ClassVar[dict[str, tuple[str, str]]] = {
        "a": ("10.213.0.1", "fd00:213::1"),
        "b": ("10.213.0.2", "fd00:213::2"),
    }

    def __init__(self) -> None:
        tag = f"ipctool-test-{run_tag()}-{worker()}"
        self.names = {"a": f"{tag}-a", "b": f"{tag}-b"}

    def create(self) -> None:
        for name in self.names.values():
            ip("netns", "add", name)
        a, b = self.names["a"], self.names["b"]
        ip("link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b)
        for side, name in self.names.items():
            v4, v6 = self.ADDRESSES[side]
            ip("-n", name, "addr", "add", f"{v4}/24", "dev", "veth0")
            ip("-n", name, "addr", "add", f"{v6}/64", "dev", "veth0", "nodad")
            ip("-n", name, "link", "set", "veth0", "up")
            ip("-n", name, "link", "set", "lo", "up")

    def remove(self) -> None:
        for name in self.names.values():  # the veth pair goes with its namespaces
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
            shutil.rmtree(f"{NETNS_ETC}/{name}", ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(NETNS_ETC)  # only if no other namespace has files there

    def resolver(self, side: str, resolv_conf: str) -> None:
        """The resolv.conf that `ip netns exec` puts in place of /etc/resolv.conf."""
        directory = Path(NETNS_ETC) / self.names[side]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "resolv.conf").write_text(resolv_conf)

    def command(self, side: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.names[side], *command("tcp", *args)]

    def run(self, side: str, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(self.command(side, *args), input=input, capture_output=True,
                              timeout=30, check=False)  # fmt: skip

    def listen(
        self, side: str, target: str, stdout: object = subprocess.PIPE
    ) -> tuple[subprocess.Popen, int]:
        read_end, write_end = os.pipe()
        receiver = subprocess.Popen(
            self.command(side, "recv", target, "--ready-fd", str(write_end)),
            pass_fds=(write_end,),
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as announced:
            line = announced.readline()
        if not line:
            stop(receiver)
            raise AssertionError(f"recv in {side} never listened: {receiver.stderr.read()!r}")
        return receiver, int(line.rpartition(b":")[2])


NETNS_ETC = "/etc/netns"  # ip netns exec NAME bind-mounts /etc/netns/NAME/* over /etc


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def hosts() -> Iterator[Namespaces]:
    spaces = Namespaces()
    try:
        spaces.create()
    except (OSError, FileNotFoundError) as err:
        spaces.remove()
        if os.geteuid() != 0:
            pytest.skip(f"network namespaces need root (CAP_SYS_ADMIN): {err}")
        pytest.skip(f"network namespaces cannot be made here: {err}")
    try:
        yield spaces
    finally:
        spaces.remove()


def test_tcp_between_two_hosts(hosts: Namespaces, tmp_path: Path) -> None:
    """1 MiB from B to A (into a file: send waits for recv to close, so recv must
    not wait on a pipe nobody reads yet), then IPv6, then a listener on every
    interface of B."""
    a4, a6 = Namespaces.ADDRESSES["a"]
    data = os.urandom(1 << 20)
    got = tmp_path / "got"
    with open(got, "wb") as out:
        receiver, port = hosts.listen("a", f"{a4}:0", stdout=out)
    sent = hosts.run("b", "send", f"{a4}:{port}", input=data)
    assert (sent.returncode, sent.stderr) == (0, b"")
    assert receiver.wait(timeout=10) == 0
    assert got.read_bytes() == data
    receiver, port = hosts.listen("a", f"[{a6}]:0")  # IPv6 between them
    sent = hosts.run("b", "send", f"[{a6}]:{port}", input=b"over IPv6")
    assert (sent.returncode, sent.stderr) == (0, b"")
    assert receiver.communicate(timeout=10)[0] == b"over IPv6"
    receiver, port = hosts.listen("b", "0.0.0.0:0")  # every interface: B's address too
    b4, _ = Namespaces.ADDRESSES["b"]
    sent = hosts.run("a", "send", f"{b4}:{port}", "--data", "to every interface")
    assert sent.returncode == 0, sent.stderr
    assert receiver.communicate(timeout=10)[0] == b"to every interface"


def test_only_a_port_is_not_reachable_from_another_host(hosts: Namespaces) -> None:
    a4, _ = Namespaces.ADDRESSES["a"]
    receiver, port = hosts.listen("a", ":0")
    try:
        refused = hosts.run("b", "send", f"{a4}:{port}", input=b"x")
        assert refused.returncode == 3, refused.stderr
        assert b"connection refused" in refused.stderr
        assert receiver.poll() is None
        local = hosts.run("a", "send", f":{port}", "--data", "from loopback")
        assert local.returncode == 0, local.stderr
        assert receiver.communicate(timeout=10)[0] == b"from loopback"
    finally:
        stop(receiver)


def test_a_resolver_out_of_reach_is_exit_3(hosts: Namespaces) -> None:
    """A name server with no route to it: the resolver fails at once, "for now"."""
    hosts.resolver("b", "nameserver 10.214.0.53\n")  # no route in B
    result = hosts.run("b", "send", "unresolved.example:80", input=b"x")
    assert result.returncode == 3, result.stderr
    assert result.stderr.endswith(
        b"unresolved.example does not resolve for now: temporary failure in name resolution\n"
    )


def test_a_resolver_that_never_answers_is_ended_by_timeout_and_ctrl_c(hosts: Namespaces) -> None:
    """A name server on the link that never answers (no such neighbour), with the
    resolver told to wait 30 s an attempt: --timeout and Ctrl-C end the wait."""
    hosts.resolver("b", "nameserver 10.213.0.99\noptions timeout:30 attempts:5\n")
    timed = hosts.run("b", "send", "unresolved.example:80", "--timeout", "0.5", input=b"x")
    assert timed.returncode == 124, timed.stderr
    assert timed.stderr == b"ipctool: tcp: unresolved.example:80: timed out after 0.5 s\n"
    sender = subprocess.Popen(
        hosts.command("b", "send", "unresolved.example:80"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # ip netns exec execs ipctool in its own process: the same pid, once it runs Python
    until(lambda: "python" in Path(f"/proc/{sender.pid}/comm").read_text(), sender, "ipctool")
    wait_until_blocked(sender.pid)
    sender.send_signal(signal.SIGINT)
    _, err = sender.communicate(timeout=20)  # the resolver alone would take minutes
    assert (sender.returncode, err) == (130, b"")


def test_no_route_is_exit_3(hosts: Namespaces) -> None:
    unreachable = hosts.run("b", "send", "10.214.0.1:80", input=b"x")  # no route in B
    assert unreachable.returncode == 3, unreachable.stderr
    assert unreachable.stderr.endswith(b"10.214.0.1:80: network unreachable: no route to it\n")


# --- inspect and clean -------------------------------------------------------------------


def test_inspect_shows_listener_connection_processes_and_queued_bytes() -> None:
    peer = python_peer(
        "import socket, signal\n"
        "s = socket.create_server(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
        "c = socket.create_connection(('127.0.0.1', port)); c.sendall(b'x' * 1234)\n"
        "a, _ = s.accept()\n"
        "p = socket.create_connection(('127.0.0.1', port))\n"  # not accepted
        "print(port, c.getsockname()[1], flush=True); signal.pause()\n"
    )
    try:
        port, client_port = map(int, ready(peer).split())
        records = run("tcp", "inspect", f":{port}", "--json").json()
        for record in records:
            check_record(record, "tcp")
        listener = next(r for r in records if r["kind"] == "listener")
        assert listener["target"] == f"127.0.0.1:{port}" and listener["state"] == "LISTEN"
        assert (listener["users"], listener["pending"]) == ([peer.pid], 1)
        accepted = next(r for r in records
                        if r["target"] == f"127.0.0.1:{port},127.0.0.1:{client_port}")  # fmt: skip
        assert (accepted["state"], accepted["size"]) == ("ESTAB", 1234)
        assert accepted["users"] == [peer.pid]
        assert accepted["peer_pids"] == [peer.pid]  # the client's end is on this host
        one = run("tcp", "inspect", accepted["target"], "--json").json()
        assert one["id"] == accepted["id"] and one["processes"][0]["pid"] == peer.pid
        by_inode = run("tcp", "inspect", f"socket:[{accepted['id']}]", "--json").json()
        assert by_inode["target"] == accepted["target"]
        everything = run("tcp", "inspect", "--json").json()
        assert listener["target"] in {r["target"] for r in everything}
        table = run("tcp", "inspect")
        assert table.code == 0 and f"127.0.0.1:{port}".encode() in table.stdout
    finally:
        stop(peer)
    nothing = run("tcp", "inspect", f"127.0.0.1:{port}")
    assert_one_line_error(nothing, "tcp", 3)


def test_clean_reports_what_needs_attention_and_removes_nothing() -> None:
    peer = python_peer(
        "import socket, signal\n"
        "s = socket.create_server(('127.0.0.1', 0)); port = s.getsockname()[1]\n"
        "c = socket.create_connection(('127.0.0.1', port))\n"  # waits to be accepted
        "t = socket.create_server(('127.0.0.1', 0))\n"
        "d = socket.create_connection(('127.0.0.1', t.getsockname()[1])); a, _ = t.accept()\n"
        "d.close()\n"  # the peer closed; `a` is never closed: CLOSE-WAIT
        "print(port, t.getsockname()[1], flush=True); signal.pause()\n"
    )
    try:
        port, other = map(int, ready(peer).split())
        until(lambda: any(s.state == inetdiag.CLOSE_WAIT and s.local[1] == other
                          for s in sockets()))  # fmt: skip
        report = run("tcp", "clean", "--json")
        assert report.code == 0, report.err
        entries = {e["target"]: e for e in report.json()}
        waiting = entries[f"127.0.0.1:{port}"]
        assert waiting["action"] == "skipped" and waiting["users"] == [peer.pid]
        assert "1 connection waits to be accepted" in waiting["reason"]
        assert str(peer.pid) in waiting["reason"]
        half = next(e for t, e in entries.items() if t.startswith(f"127.0.0.1:{other},"))
        assert half["state"] == "CLOSE-WAIT" and "has not closed its end" in half["reason"]
        assert report.err.startswith("ipctool: tcp: nothing removed: ")
        text = run("tcp", "clean")
        assert f"skipped listener 127.0.0.1:{port}: 1 connection waits".encode() in text.stdout
        named = run("tcp", "clean", f"127.0.0.1:{port}")
        assert named.code == 6, named.err
        assert f"pid {peer.pid} (python" in named.err and "--force" in named.err
        assert listening_on(port) and peer.poll() is None  # nothing was touched
    finally:
        stop(peer)
    assert_one_line_error(run("tcp", "clean", f"127.0.0.1:{port}"), "tcp", 3)


def test_clean_force_closes_one_socket_from_outside() -> None:
    """--force closes the one socket named, as ss -K does: recv's connection (recv's
    read fails, the peer is reset), then a listener named by its address."""
    receiver, port = listen("127.0.0.1:0", stdout=subprocess.DEVNULL)
    client = socket.create_connection(("127.0.0.1", port))
    try:
        until(lambda: connections_at(port), receiver, "recv accepts")
        wait_until_blocked(receiver.pid)
        recv_end = f"127.0.0.1:{port},127.0.0.1:{client.getsockname()[1]}"
        assert_one_line_error(run("tcp", "clean", "--force"), "tcp", 2)  # one socket, named
        dry = run("tcp", "clean", recv_end, "--force", "--dry-run")
        assert (dry.code, dry.stdout.startswith(b"would remove connection ")) == (0, True)
        closed = run("tcp", "clean", recv_end, "--force", "--json")
        assert closed.code == 0, closed.err
        assert [(e["action"], e["users"]) for e in closed.json()] == [("removed", [receiver.pid])]
        _, err = receiver.communicate(timeout=10)
        assert receiver.returncode == 1
        assert err.decode() == f"ipctool: tcp: 127.0.0.1:{port}: software caused connection abort\n"
        with pytest.raises(ConnectionResetError):
            client.recv(10)
    finally:
        client.close()
        stop(receiver)
    receiver, port = listen("127.0.0.1:0")
    wait_until_blocked(receiver.pid)
    closed = run("tcp", "clean", f":{port}", "--force")
    assert closed.stdout.decode().startswith(f"removed listener 127.0.0.1:{port}: closed from ")
    _, err = receiver.communicate(timeout=10)
    assert receiver.returncode == 1
    assert err.decode().endswith(": the listener was closed from outside (clean --force, ss -K)\n")
    assert not listening_on(port)


def test_clean_force_leaves_what_no_process_holds() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's end closes first: it is left in TIME-WAIT
        client.close()
    until(lambda: any(s.local[1] == port and s.state == inetdiag.TIME_WAIT for s in sockets()))
    waiting = next(s for s in sockets() if s.local[1] == port and s.state == inetdiag.TIME_WAIT)
    target = f"127.0.0.1:{port},127.0.0.1:{waiting.peer[1]}"
    record = run("tcp", "inspect", target, "--json").json()
    assert (record["users"], record["socket_inode"], record["state"]) == ([], None, "TIME-WAIT")
    refused = run("tcp", "clean", target, "--force")
    assert_one_line_error(refused, "tcp", 6)
    assert refused.err.endswith("no process holds it: the kernel ends it by itself\n")


def test_clean_says_when_there_is_nothing_to_clean() -> None:
    """In a network namespace of its own nothing needs cleaning: one line says so."""
    done = subprocess.run(
        ["unshare", "--net", *command("tcp", "clean")], capture_output=True, check=False
    )
    if done.returncode and b"unshare" in done.stderr:
        pytest.skip(f"no network namespace here: {done.stderr.decode().strip()}")
    assert (done.returncode, done.stdout) == (0, b""), done.stderr
    assert done.stderr.decode().startswith("ipctool: tcp: nothing to clean: ")


def test_the_proc_fallback_reads_the_same_sockets() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("::1", port)) as client:
            client.sendall(b"q" * 77)
            accepted, _ = listener.accept()
            with accepted:
                until(lambda: any(s.rqueue == 77 for s in inetdiag.from_proc(socket.IPPROTO_TCP)
                                  if s.local == ("::1", port)))  # fmt: skip
                diag = {(s.local, s.peer, s.state) for s in inetdiag.from_sock_diag(6)}
                proc = {(s.local, s.peer, s.state) for s in inetdiag.from_proc(6)}
                mine = {k for k in proc if port in (k[0][1], k[1][1])}
                assert len(mine) == 3 and mine <= diag

