"""udp against the lecture's C sender and receiver, socat, nc and Python peers, on
loopback and between two network namespaces (unicast, broadcast, multicast);
with bad input, faults, inspect and clean of real sockets."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NOBODY

from ipctool.testing import (
    Started,
    assert_one_line_error,
    check_record,
    command,
    run,
    start_receiver,
    until,
    wait_until_blocked,
)
from ipctool.testkit import unique_name

IPCTOOL = " ".join(command())


def receiver(*args: str, stdout: object = subprocess.PIPE, **popen: object) -> Started:
    """ipctool udp recv ARGS, once it said it is bound (its target: the real port)."""
    return start_receiver(
        "udp", "recv", *args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
        **popen,
    )  # fmt: skip


def free_port() -> int:
    """A loopback UDP port free now, for peers that cannot bind port 0 and say which."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_of(target: str) -> int:
    return int(target.rpartition(":")[2])


def bound(port: int, family: str = "") -> bool:
    """Whether a UDP socket is bound to the port (/proc/net/udp: nothing is sent)."""
    with open(f"/proc/net/udp{family}") as f:
        return any(
            int(line.split()[1].rpartition(":")[2], 16) == port for line in list(f)[1:] if line
        )


def python_peer(code: str) -> subprocess.Popen:
    """A Python program as a peer; its first line of output (here: 'ready ...') is read."""
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def ready_line(peer: subprocess.Popen) -> list[str]:
    line = peer.stdout.readline().decode()
    assert line.startswith("ready"), peer.stderr.read()
    return line.split()[1:]


def stderr_lines(err: bytes) -> list[str]:
    """recv's stderr without the line that names the port it took (port 0)."""
    return [line for line in err.decode().splitlines() if " receiving on " not in line]


def one_error(result: object, code: int) -> None:
    """One error line besides the port line, and the exit code."""
    lines = stderr_lines(result.stderr)  # type: ignore[attr-defined]
    assert result.code == code, result.err  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("ipctool: udp: "), lines
    assert "Traceback" not in result.err  # type: ignore[attr-defined]


@pytest.fixture(params=["native", "python"])
def loops(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways udp moves datagrams: its C batches (sendmmsg, recvmmsg:
    plugins/udp/_batch.c) and its Python loops (IPCTOOL_NO_NATIVE=1)."""
    if request.param == "python":
        monkeypatch.setenv("IPCTOOL_NO_NATIVE", "1")
    else:
        monkeypatch.delenv("IPCTOOL_NO_NATIVE", raising=False)
    return str(request.param)


# --- the lecture's programs ---------------------------------------------------------


def test_the_lectures_sender_to_ipctool(compile_peer) -> None:
    """The lecture's sender sends "hello UDP!" and its NUL (strlen + 1)."""
    started = receiver(":0")
    sender = compile_peer("udp_sender.c", UDP_PORT=str(port_of(started.target)))
    assert subprocess.run([str(sender)], timeout=10).returncode == 0
    out, err = started.process.communicate(timeout=10)
    assert (started.process.returncode, out) == (0, b"hello UDP!\0")
    assert stderr_lines(err) == []
    cut = receiver(":0", "--cstring", "--json")  # as C's %s reads it
    sender = compile_peer("udp_sender.c", UDP_PORT=str(port_of(cut.target)))
    subprocess.run([str(sender)], check=True, timeout=10)
    record = json.loads(cut.process.communicate(timeout=10)[0])
    assert (record["data"], record["sender"]["host"]) == ("hello UDP!", "127.0.0.1")


def test_ipctool_to_the_lectures_receiver(compile_peer) -> None:
    port = free_port()
    peer = subprocess.Popen(
        [str(compile_peer("udp_receiver.c", UDP_PORT=str(port)))], stdout=subprocess.PIPE
    )
    wait_until_blocked(peer.pid)  # in recvfrom, bound
    sent = run("udp", "send", f"127.0.0.1:{port}", "--data", "hello from ipctool", "--cstring")
    assert (sent.code, sent.err) == (0, "")
    assert peer.communicate(timeout=10)[0] == b"got: 'hello from ipctool'\n"


# --- socat and nc, both ways -----------------------------------------------------------


def test_socat_sends_to_ipctool() -> None:
    started = receiver(":0", "--count", "2", "--lines")
    target = f"UDP4-SENDTO:127.0.0.1:{port_of(started.target)}"
    for word in (b"one", b"two"):
        subprocess.run(["socat", "-u", "-", target], input=word, check=True, timeout=10)
    out, err = started.process.communicate(timeout=10)
    assert (started.process.returncode, out, stderr_lines(err)) == (0, b"one\ntwo\n", [])


def test_ipctool_sends_to_socat() -> None:
    port = free_port()
    peer = subprocess.Popen(
        ["socat", "-u", f"UDP4-RECV:{port},bind=127.0.0.1", "-"], stdout=subprocess.PIPE
    )
    try:
        until(lambda: bound(port), peer, "socat is bound")
        assert run("udp", "send", f"127.0.0.1:{port}", "--data", "to socat").code == 0
        assert peer.stdout.read(8) == b"to socat"
    finally:
        peer.kill()
        peer.wait()


def test_ipctool_over_ipv6_with_socat() -> None:
    started = receiver("[::1]:0")
    assert started.target.startswith("[::1]:")
    target = f"UDP6-SENDTO:[::1]:{port_of(started.target)}"
    subprocess.run(["socat", "-u", "-", target], input=b"six", check=True, timeout=10)
    assert started.process.communicate(timeout=10)[0] == b"six"


def test_nc_both_ways() -> None:
    started = receiver(":0")
    subprocess.run(
        ["nc", "-u", "-q0", "127.0.0.1", str(port_of(started.target))],
        input=b"from nc", check=True, timeout=10,
    )  # fmt: skip
    assert started.process.communicate(timeout=10)[0] == b"from nc"
    port = free_port()
    peer = subprocess.Popen(["nc", "-u", "-l", "127.0.0.1", str(port)], stdout=subprocess.PIPE)
    try:
        until(lambda: bound(port), peer, "nc is bound")
        assert run("udp", "send", f"127.0.0.1:{port}", "--data", "to nc").code == 0
        assert peer.stdout.read(5) == b"to nc"
    finally:
        peer.kill()
        peer.wait()


def test_reply_from_socat_and_from_nc() -> None:
    """send --reply prints one answering datagram: socat's echo through tr, and what
    nc -l sends back to its first sender."""
    port = free_port()
    echo = subprocess.Popen(["socat", f"UDP4-RECVFROM:{port},bind=127.0.0.1", "SYSTEM:tr a-z A-Z"])
    until(lambda: bound(port), echo, "socat is bound")
    answered = run(
        "udp", "send", f"127.0.0.1:{port}", "--data", "ping", "--reply", "--timeout", "10"
    )
    assert (answered.code, answered.stdout, answered.err) == (0, b"PING", "")
    echo.wait(timeout=10)
    port = free_port()
    peer = subprocess.Popen(
        ["nc", "-u", "-l", "127.0.0.1", str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        peer.stdin.write(b"pong\n")
        peer.stdin.flush()
        until(lambda: bound(port), peer, "nc is bound")
        answered = run(
            "udp", "send", f"127.0.0.1:{port}", "--data", "ping", "--lines", "--reply",
            "--timeout", "10",
        )  # fmt: skip
        assert (answered.code, answered.stdout) == (0, b"pong\n\n"), answered.err
        assert peer.stdout.read(4) == b"ping"
    finally:
        peer.kill()
        peer.wait()


# --- integrity --------------------------------------------------------------------------


def test_ten_thousand_lines_none_lost_in_order(loops: str, tmp_path: Path) -> None:
    got = tmp_path / "got"
    with open(got, "wb") as out:
        started = receiver(":0", "--lines", "--count", "10000", stdout=out)
    lines = b"".join(b"line %d\n" % i for i in range(10000))
    sent = run("udp", "send", started.target, "--lines", input=lines, timeout=60)
    assert sent.code == 0, sent.err
    _, err = started.process.communicate(timeout=60)
    assert (started.process.returncode, stderr_lines(err)) == (0, [])
    assert got.read_bytes() == lines


def test_records_and_json_senders(loops: str) -> None:
    started = receiver("[::]:0", "--null", "--count", "3", "--json")  # every address, both families
    sent = run(
        "udp", "send", f"127.0.0.1:{port_of(started.target)}", "--null", input=b"a\0bb\0\xff\0"
    )
    assert sent.code == 0, sent.err
    out, _ = started.process.communicate(timeout=10)
    records = [json.loads(line) for line in out.splitlines()]
    assert [(r["size"], r["encoding"]) for r in records] == [
        (1, "utf-8"),
        (2, "utf-8"),
        (1, "base64"),
    ]
    sender = records[0]["sender"]
    assert sender["host"] == "127.0.0.1" and sender["address"] == f"127.0.0.1:{sender['port']}"


def test_the_largest_datagram_goes_and_one_more_byte_is_refused(loops: str) -> None:
    started = receiver(":0")
    big = run("udp", "send", started.target, input=b"x" * 65508)
    one_error(big, 7)
    assert "65507" in big.err
    assert run("udp", "send", started.target, input=b"y" * 65507).code == 0
    assert started.process.communicate(timeout=10)[0] == b"y" * 65507
    six = receiver("[::1]:0")
    assert run("udp", "send", six.target, input=b"z" * 65527).code == 0
    assert six.process.communicate(timeout=10)[0] == b"z" * 65527
    one_error(run("udp", "send", six.target, input=b"z" * 65528), 7)


def test_a_record_too_large_stops_send_after_the_ones_before() -> None:
    started = receiver(":0", "--lines", "--count", "1")
    result = run("udp", "send", started.target, "--lines", input=b"small\n" + b"x" * 70000 + b"\n")
    one_error(result, 7)
    assert "earlier records were sent" in result.err
    assert started.process.communicate(timeout=10)[0] == b"small\n"


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("127.0.0.1:65536", "out of range"),
        ("127.0.0.1:x", "not a number"),
        ("127.0.0.1:0", "port 0"),
        ("[::1", "closing ]"),
        ("::1:5000", "brackets"),
        ("0.0.0.0:5000", "every interface"),
        ("[::]:5000", "every interface"),
        ("5000", "no port"),
        ("", "no address"),
        ("no-such-host.invalid:5000", "does not resolve"),
    ],
)
def test_bad_destinations_are_usage_errors(target: str, words: str) -> None:
    result = run("udp", "send", target, "--data", "x")
    assert_one_line_error(result, "udp", 2)
    assert words in result.err


def test_bad_receive_addresses_and_flags() -> None:
    for args in (
        ("[::1",),
        ("127.0.0.1:65536",),
        ("0.0.0.0",),
        (":0", "--group", "10.0.0.1"),
        (":0", "--group", "nonsense"),
        ("127.0.0.1:0", "--group", "239.1.2.3"),
        ("[::1]:0", "--group", "239.1.2.3"),
        (":0", "--follow", "--count", "2"),
        (":0", "--lines", "--null"),
        (":0", "--interface", "no-such-interface0"),
        (":0", "--group", "ff02::4242"),  # a link-local group without its link
    ):
        result = run("udp", "recv", *args, "--timeout", "5")
        assert result.code in (2, 3), (args, result.err)
        assert_one_line_error(result, "udp", result.code)


def test_a_port_in_use_and_a_port_nobody_may_bind() -> None:
    started = receiver(":0")
    try:
        taken = run("udp", "recv", started.target, "--timeout", "5")
        assert_one_line_error(taken, "udp", 6)
        assert "in use" in taken.err
    finally:
        started.process.kill()
        started.process.wait()
    low = subprocess.run(
        [*NOBODY, *command("udp", "recv", ":7", "--timeout", "5")], capture_output=True
    )
    assert low.returncode == 4, low.stderr
    assert b"root's" in low.stderr


def test_an_address_not_of_this_host() -> None:
    result = run("udp", "recv", "192.0.2.77:0", "--timeout", "5")  # TEST-NET-1
    assert_one_line_error(result, "udp", 2)
    assert "not an address of this host" in result.err


def test_closed_stdin_sends_nothing() -> None:
    started = receiver(":0", "--nowait", "--follow")
    closed = subprocess.run(
        ["bash", "-c", f"{IPCTOOL} udp send {started.target} <&-"], capture_output=True
    )
    assert closed.returncode == 1 and b"stdin" in closed.stderr
    os.kill(started.process.pid, signal.SIGINT)
    assert started.process.communicate(timeout=10)[0] == b""


# --- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_receiving(sig: int, code: int) -> None:
    started = receiver(":0", "--follow")
    wait_until_blocked(started.process.pid)
    started.process.send_signal(sig)
    out, err = started.process.communicate(timeout=10)
    assert (started.process.returncode, out, stderr_lines(err)) == (code, b"", [])


def test_ctrl_c_mid_stream_writes_what_it_took(tmp_path: Path) -> None:
    got = tmp_path / "got"
    with open(got, "wb") as out:
        started = receiver(":0", "--follow", "--lines", stdout=out)
    assert run("udp", "send", started.target, "--lines", input=b"a\nb\n").code == 0
    until(lambda: got.read_bytes() == b"a\nb\n", started.process, "both lines written")
    started.process.send_signal(signal.SIGINT)
    assert started.process.wait(timeout=10) == 130
    assert got.read_bytes() == b"a\nb\n"


def test_timeouts() -> None:
    waited = run("udp", "recv", ":0", "--timeout", "0.5")
    one_error(waited, 124)
    quiet = run("udp", "recv", ":0", "--follow", "--timeout", "0.5")
    assert (quiet.code, stderr_lines(quiet.stderr)) == (0, [])
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    try:
        target = f"127.0.0.1:{silent.getsockname()[1]}"
        no_answer = run("udp", "send", target, "--data", "x", "--reply", "--timeout", "0.5")
        assert_one_line_error(no_answer, "udp", 124)
        assert silent.recv(10) == b"x"
    finally:
        silent.close()


def test_nowait_and_count_not_reached() -> None:
    nothing = run("udp", "recv", ":0", "--nowait")
    one_error(nothing, 5)
    started = receiver(":0", "--count", "3", "--lines", "--timeout", "1")
    assert run("udp", "send", started.target, "--data", "only one").code == 0
    out, err = started.process.communicate(timeout=10)
    assert (started.process.returncode, out) == (124, b"only one\n")  # two never came
    assert stderr_lines(err)[-1].endswith("timed out after 1 s")


def test_a_reply_from_nobody_is_port_unreachable() -> None:
    port = free_port()  # nothing is bound to it: the host answers ICMP port unreachable
    result = run("udp", "send", f"127.0.0.1:{port}", "--data", "x", "--reply", "--timeout", "10")
    assert_one_line_error(result, "udp", 3)
    assert "port unreachable" in result.err


def test_a_reader_that_leaves_ends_recv_quietly() -> None:
    shell = f"{IPCTOOL} udp recv :0 --follow --lines --ready-fd 3 3>$READY | head -n 1"
    read_end, write_end = os.pipe()
    reader = subprocess.Popen(
        ["bash", "-c", shell + "; echo ${PIPESTATUS[0]} >&2"],
        env={**os.environ, "READY": f"/dev/fd/{write_end}"},
        pass_fds=(write_end,), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end) as ready:
        target = ready.readline().strip()
    sent = run("udp", "send", target, "--lines", input=b"".join(b"%d\n" % i for i in range(500)))
    assert sent.code == 0
    out, err = reader.communicate(timeout=10)
    assert out == b"0\n"
    assert stderr_lines(err) == ["141"]  # no error line: datagrams not read are not news


def test_drops_are_said(tmp_path: Path) -> None:
    """A receiver that stops reading (SIGSTOP) while far more than its buffer comes:
    once it goes on, it says how many the kernel dropped."""
    got = tmp_path / "got"
    with open(got, "wb") as out:
        started = receiver(":0", "--lines", "--count", "100", stdout=out)
    proc = started.process
    wait_until_blocked(proc.pid)
    proc.send_signal(signal.SIGSTOP)
    try:
        until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split()[2] == "T")
        buffer = int(Path("/proc/sys/net/core/rmem_max").read_text()) * 2
        count = buffer // 1000 + 1000  # each takes more than its 1000 bytes of the buffer
        line = b"d" * 999 + b"\n"
        sent = run("udp", "send", started.target, "--lines", input=line * count, timeout=60)
        assert sent.code == 0, sent.err
    finally:
        proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    warnings = stderr_lines(err)
    assert len(warnings) == 1 and "warning: the kernel dropped" in warnings[0], warnings
    assert got.read_bytes() == line * 100


# --- inspect and clean --------------------------------------------------------------


PEER = """
import signal, socket
four = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); four.bind(("127.0.0.1", 0))
six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); six.bind(("::1", 0))
small = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1); small.bind(("127.0.0.1", 0))
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(3):
    out.sendto(b"x" * 100, four.getsockname())
    out6.sendto(b"y" * 100, six.getsockname())
for _ in range(50):
    out.sendto(b"z" * 1000, small.getsockname())
print("ready", four.getsockname()[1], six.getsockname()[1], small.getsockname()[1], flush=True)
signal.pause()
"""


@pytest.fixture
def peer() -> Iterator[tuple[subprocess.Popen, list[int]]]:
    """Sockets held by another process: v4 and v6 with datagrams queued, one dropping."""
    process = python_peer(PEER)
    ports = [int(p) for p in ready_line(process)]
    yield process, ports
    process.kill()
    process.wait()


def test_inspect_shows_sockets_owners_queued_bytes_and_drops(peer) -> None:
    process, (four, six, small) = peer
    record = run("udp", "inspect", f"127.0.0.1:{four}", "--json").json()
    check_record(record, "udp")
    assert (record["kind"], record["state"], record["users"]) == ("ipv4", "bound", [process.pid])
    assert record["size"] >= 300 and record["processes"][0]["pid"] == process.pid
    assert record["capacity"] > 0 and record["drops"] == 0
    v6 = run("udp", "inspect", f"[::1]:{six}", "--json").json()
    assert (v6["kind"], v6["target"], v6["users"]) == ("ipv6", f"[::1]:{six}", [process.pid])
    assert v6["size"] >= 300
    dropping = run("udp", "inspect", f"127.0.0.1:{small}", "--json").json()
    assert dropping["drops"] > 0
    listed = run("udp", "inspect", "--json").json()
    for each in listed:
        check_record(each, "udp")
    mine = {r["target"] for r in listed if process.pid in r["users"]}
    assert {f"127.0.0.1:{four}", f"[::1]:{six}", f"127.0.0.1:{small}"} <= mine
    by_inode = run("udp", "inspect", f"socket:[{record['id']}]", "--json").json()
    assert by_inode["target"] == record["target"]
    on_port = run("udp", "inspect", f":{four}", "--json").json()
    assert [r["id"] for r in on_port] == [record["id"]]
    table = run("udp", "inspect")
    assert table.code == 0 and f"[::1]:{six}".encode() in table.stdout
    assert run("udp", "inspect", "127.0.0.1:1", "--json").code == 3


def test_inspect_from_proc_where_sock_diag_is_not(peer) -> None:
    from ipctool.inetdiag import from_proc

    _, (four, six, small) = peer
    found = {s.local: s for s in from_proc(socket.IPPROTO_UDP)}
    assert found["127.0.0.1", four].rqueue >= 300
    assert found["::1", six].rqueue >= 300
    assert found["127.0.0.1", small].meminfo[8] > 0  # drops


def test_clean_finds_nothing_stale_and_closes_one_only_with_force(peer) -> None:
    process, (four, _, _) = peer
    stale = run("udp", "clean", "--stale", "--json")
    assert (stale.code, stale.json()) == (0, [])
    assert "nothing to clean" in stale.err
    target = f"127.0.0.1:{four}"
    refused = run("udp", "clean", target)
    assert_one_line_error(refused, "udp", 6)
    assert str(process.pid) in refused.err and "--force" in refused.err
    assert run("udp", "clean", target, "--force", "--dry-run").code == 0
    assert run("udp", "inspect", target, "--json").code == 0
    nobody = subprocess.run(
        [*NOBODY, *command("udp", "clean", target, "--force")], capture_output=True
    )
    assert nobody.returncode == 4, nobody.stderr
    closed = run("udp", "clean", target, "--force")
    assert (closed.code, closed.err) == (0, ""), closed.err
    assert run("udp", "inspect", target, "--json").code == 3
    assert process.poll() is None  # its process goes on; its port is free
    assert run("udp", "recv", target, "--nowait").code == 5


# --- two hosts: network namespaces joined by a veth pair ---------------------------------


class Hosts:
    """Two network namespaces, `a` (10.9.0.1, fd09::1 on veth0) and `b` (10.9.0.2,
    fd09::2 on veth1), joined by a veth pair; named with the run's tag."""

    def __init__(self) -> None:
        base = unique_name().lstrip("/")
        self.a, self.b = f"{base}-a", f"{base}-b"
        self.made: list[str] = []

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def make(self) -> None:
        for ns in (self.a, self.b):
            self.ip("netns", "add", ns)
            self.made.append(ns)
            for conf in ("default", "all"):  # addresses usable at once (no DAD)
                self.exec(ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.accept_dad=0")
        self.ip("link", "add", "veth0", "netns", self.a, "type", "veth",
                "peer", "name", "veth1", "netns", self.b)  # fmt: skip
        for ns, dev, n in ((self.a, "veth0", 1), (self.b, "veth1", 2)):
            self.ip("-n", ns, "addr", "add", f"10.9.0.{n}/24", "brd", "+", "dev", dev)
            self.ip("-n", ns, "addr", "add", f"fd09::{n}/64", "dev", dev, "nodad")
            self.ip("-n", ns, "link", "set", dev, "up")
            self.ip("-n", ns, "link", "set", "lo", "up")
        for ns, dev in ((self.a, "veth0"), (self.b, "veth1")):
            until(lambda ns=ns, dev=dev: self.up(ns, dev), what=f"{dev} up in {ns}")

    def up(self, ns: str, dev: str) -> bool:
        shown = subprocess.run(["ip", "-n", ns, "addr", "show", dev], capture_output=True)
        return b"LOWER_UP" in shown.stdout and b"tentative" not in shown.stdout

    def exec(self, ns: str, *argv: str) -> None:
        subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True)

    def remove(self) -> None:
        for ns in self.made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)

    def run(self, ns: str, *args: str, input: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *command(*args)],
            input=input, capture_output=True, timeout=30,
        )  # fmt: skip

    def receiver(self, ns: str, *args: str) -> tuple[subprocess.Popen, str]:
        """ipctool ARGS in the namespace, once it wrote its ready line."""
        read_end, write_end = os.pipe()
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, *command(*args)],
            env={**os.environ, "IPCTOOL_READY_FD": str(write_end)},
            pass_fds=(write_end,), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], 10)
            line = os.read(read_end, 200) if ready else b""
        finally:
            os.close(read_end)
        if not line.endswith(b"\n"):
            process.kill()
            raise AssertionError(f"never ready: {process.communicate()[1]!r}")
        return process, line.decode().strip()


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    made = Hosts()
    try:
        made.make()
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        made.remove()
        why = getattr(err, "stderr", b"") or str(err).encode()
        pytest.skip(
            f"no network namespaces here (root and iproute2 needed): {why.decode().strip()}"
        )
    yield made
    made.remove()


def test_unicast_between_two_hosts(hosts: Hosts) -> None:
    for bind, to in (("10.9.0.2:0", "10.9.0.2"), ("[fd09::2]:0", "[fd09::2]")):
        process, target = hosts.receiver(hosts.b, "udp", "recv", bind, "--json", "--count", "2")
        port = port_of(target)
        for word in (b"one", b"two"):
            sent = hosts.run(hosts.a, "udp", "send", f"{to}:{port}", input=word)
            assert sent.returncode == 0, sent.stderr
        out, err = process.communicate(timeout=10)
        records = [json.loads(line) for line in out.splitlines()]
        assert [r["data"] for r in records] == ["one", "two"], err
        assert records[0]["sender"]["host"] in ("10.9.0.1", "fd09::1")


def test_loopback_is_not_reachable_from_the_other_host(hosts: Hosts) -> None:
    """A port alone binds loopback: the other host's datagram to 10.9.0.2 finds nobody."""
    process, target = hosts.receiver(hosts.b, "udp", "recv", ":0", "--timeout", "1")
    refused = hosts.run(
        hosts.a, "udp", "send", f"10.9.0.2:{port_of(target)}", "--data", "x", "--reply",
        "--timeout", "10",
    )  # fmt: skip
    assert refused.returncode == 3, refused.stderr  # port unreachable: nothing on 10.9.0.2
    assert process.wait(timeout=10) == 124


def test_multicast_groups_between_two_hosts(hosts: Hosts) -> None:
    """An IPv4 group and a link-local IPv6 group, joined on veth1, sent to from the
    other host out of veth0; two receivers of one group on one host both get it."""
    for group, to in (("239.1.2.3", "239.1.2.3"), ("ff12::4242", "[ff12::4242]")):
        args = ("udp", "recv", ":0", "--group", group, "--interface", "veth1", "--json")
        first, target = hosts.receiver(hosts.b, *args)
        port = port_of(target)
        second, _ = hosts.receiver(hosts.b, "udp", "recv", f":{port}", "--group", group,
                                   "--interface", "veth1", "--json")  # fmt: skip
        sent = hosts.run(hosts.a, "udp", "send", f"{to}:{port}", "--interface", "veth0",
                         "--data", "to the group")  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        for process in (first, second):
            out, err = process.communicate(timeout=10)
            assert process.returncode == 0, err
            record = json.loads(out)
            assert record["data"] == "to the group"
            assert record["sender"]["host"] in ("10.9.0.1", "fd09::1") or record["sender"][
                "host"
            ].startswith("fe80::")


def test_a_group_receiver_takes_no_other_group(hosts: Hosts) -> None:
    args = ("udp", "recv", ":0", "--group", "239.1.2.3", "--interface", "veth1")
    process, target = hosts.receiver(hosts.b, *args, "--timeout", "1")
    port = port_of(target)
    other, _ = hosts.receiver(hosts.b, "udp", "recv", f":{port}", "--group", "239.9.9.9",
                              "--interface", "veth1", "--timeout", "10")  # fmt: skip
    sent = hosts.run(hosts.a, "udp", "send", f"239.9.9.9:{port}", "--interface", "veth0",
                     "--data", "not yours")  # fmt: skip
    assert sent.returncode == 0
    assert other.communicate(timeout=10)[0] == b"not yours"
    out, _ = process.communicate(timeout=10)
    assert (process.returncode, out) == (124, b"")


def test_broadcast_between_two_hosts(hosts: Hosts) -> None:
    process, target = hosts.receiver(hosts.b, "udp", "recv", "0.0.0.0:0")
    port = port_of(target)
    refused = hosts.run(hosts.a, "udp", "send", f"10.9.0.255:{port}", "--data", "all")
    assert refused.returncode == 4 and b"--broadcast" in refused.stderr
    sent = hosts.run(hosts.a, "udp", "send", f"10.9.0.255:{port}", "--broadcast", "--data", "all")
    assert sent.returncode == 0, sent.stderr
    assert process.communicate(timeout=10)[0] == b"all"


def test_leftover_namespaces_are_found(hosts: Hosts) -> None:
    from ipctool_plugins.udp.testing import leftovers

    assert {hosts.a, hosts.b} <= set(leftovers())


# --- the C batches, called directly -----------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A bound receiver and a sender connected to it, both non-blocking."""
    receiving = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiving.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # room for all
    receiving.bind(("127.0.0.1", 0))
    sending = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sending.connect(receiving.getsockname())
    for sock in (receiving, sending):
        sock.setblocking(False)
    yield receiving, sending
    receiving.close()
    sending.close()


def test_batches_keep_order_and_boundaries(pair: tuple[socket.socket, socket.socket]) -> None:
    from ipctool_plugins.udp import _batch

    receiving, sending = pair
    messages = [b"%d" % i * (i % 7) for i in range(200)] + [b"", b"x" * 65507]
    assert _batch.send_many(sending.fileno(), messages) == (len(messages), 0)
    assert _batch.send_many(sending.fileno(), []) == (0, 0)
    first, code = _batch.receive_many(receiving.fileno(), 150)  # more than one recvmmsg
    assert (len(first), code) == (150, 0)
    rest, code = _batch.receive_many(receiving.fileno(), 1000)
    assert ([m for m, _ in first + rest], code) == (messages, 0)
    assert all(meta is None for _, meta in first + rest)
    import errno

    assert _batch.receive_many(receiving.fileno(), 10) == ([], errno.EAGAIN)


def test_a_bad_batch_sends_nothing_and_errors_come_back(pair) -> None:
    import errno

    from ipctool_plugins.udp import _batch

    receiving, sending = pair
    with pytest.raises(TypeError):
        _batch.send_many(sending.fileno(), [b"a", "not bytes"])  # type: ignore[list-item]
    assert _batch.receive_many(receiving.fileno(), 10) == ([], errno.EAGAIN)
    receiving.close()  # nobody there now: loopback answers "port unreachable" at once
    assert _batch.send_many(sending.fileno(), [b"lost"]) == (1, 0)
    assert _batch.send_many(sending.fileno(), [b"again"] * 3) == (0, errno.ECONNREFUSED)
    assert _batch.receive_many(sending.fileno(), 10) == ([], errno.EAGAIN)  # said once
