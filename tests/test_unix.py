"""unix against socat, nc, logger, Python peers and the lecture's socketpair example;
with faults, bad targets, inspect and clean of real sockets."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NOBODY

from ipctool.testing import (
    assert_one_line_error,
    check_record,
    command,
    run,
    start_receiver,
    unique_path,
    until,
    wait_until_blocked,
)

IPCTOOL = " ".join(command())


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A path nothing is at, in /tmp; whatever a test left there is removed."""
    path = unique_path(".sock")
    yield path
    if os.path.lexists(path):
        os.unlink(path)


def started(*args: str, stdout: object = subprocess.PIPE, **popen: object) -> subprocess.Popen:
    """ipctool ARGS, once it said it is ready (listening, bound)."""
    return start_receiver(
        *args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, **popen
    ).process


def is_socket(path: str) -> bool:
    return os.path.lexists(path) and stat.S_ISSOCK(os.lstat(path).st_mode)


def listening(path: str) -> bool:
    """Whether a listener is on the socket file (read from /proc/net/unix: no probe)."""
    with open("/proc/net/unix") as f:
        return any(
            line.split()[-1] == path and int(line.split()[3], 16) & 0x10000
            for line in f
            if len(line.split()) > 7
        )


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def python_peer(code: str) -> subprocess.Popen:
    """A Python program as a peer; it prints 'ready' once it is."""
    peer = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert peer.stdout.readline() == b"ready\n", peer.stderr.read()
    return peer


# --- real peers: socat, nc, logger, the lecture's socketpair example ---------------


def test_socat_sends_to_ipctool(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path)
    data = os.urandom(300_000)
    subprocess.run(["socat", "-u", "-", f"UNIX-CONNECT:{sock_path}"], input=data, check=True)
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out == data, err) == (0, True, b"")
    assert not os.path.lexists(sock_path), "recv left its socket file"


def test_ipctool_sends_to_socat(sock_path: str, tmp_path: Path) -> None:
    """send waits for socat to close, so socat writes to a file (a pipe nobody reads
    yet would stall it)."""
    got = tmp_path / "got"
    with open(got, "wb") as out:
        listener = subprocess.Popen(["socat", "-u", f"UNIX-LISTEN:{sock_path}", "-"], stdout=out)
    until(lambda: listening(sock_path), listener, "socat listens")
    data = os.urandom(300_000)
    sent = run("unix", "send", sock_path, input=data)
    assert sent.code == 0, sent.err
    assert listener.wait(timeout=10) == 0
    assert got.read_bytes() == data


def test_nc_both_ways(sock_path: str) -> None:
    listener = subprocess.Popen(["nc", "-lU", sock_path], stdout=subprocess.PIPE)
    until(lambda: listening(sock_path), listener, "nc listens")
    assert run("unix", "send", sock_path, input=b"to nc\n").code == 0
    assert listener.communicate(timeout=10)[0] == b"to nc\n"
    os.unlink(sock_path)  # nc leaves its socket file
    receiver = started("unix", "recv", sock_path)
    subprocess.run(["nc", "-N", "-U", sock_path], input=b"from nc\n", check=True, timeout=10)
    assert receiver.communicate(timeout=10)[0] == b"from nc\n"


def test_send_prints_an_echo_servers_reply(sock_path: str) -> None:
    """socat as the lecture's echo server; 4 MiB is far more than the socket buffers
    hold, so the echo must be taken while stdin is still being sent."""
    server = subprocess.Popen(["socat", f"UNIX-LISTEN:{sock_path}", "EXEC:cat"])
    until(lambda: listening(sock_path), server, "socat listens")
    data = os.urandom(4 << 20)
    sent = run("unix", "send", sock_path, input=data, timeout=60)
    assert (sent.code, sent.err) == (0, "")
    assert hashlib.sha256(sent.stdout).digest() == hashlib.sha256(data).digest()
    server.wait(timeout=10)


def test_no_reply_ends_at_the_half_close(sock_path: str) -> None:
    """A peer that never closes: send --no-reply still ends once stdin is sent."""
    peer = python_peer(
        "import socket, sys, time\n"
        f"s = socket.socket(socket.AF_UNIX); s.bind({sock_path!r}); s.listen()\n"
        "print('ready', flush=True)\n"
        "c, _ = s.accept(); data = b''\n"
        "while chunk := c.recv(65536): data += chunk\n"
        "print(len(data), flush=True); time.sleep(60)\n"
    )
    try:
        sent = run("unix", "send", sock_path, "--no-reply", input=b"x" * 1000, timeout=20)
        assert (sent.code, sent.err) == (0, "")
        assert peer.stdout.readline() == b"1000\n"
    finally:
        peer.kill()
        peer.wait()


def test_socat_datagrams_both_ways(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path, "--type", "dgram")
    subprocess.run(["socat", "-u", "-", f"UNIX-SENDTO:{sock_path}"], input=b"one", check=True)
    assert receiver.communicate(timeout=10)[0] == b"one"
    listener = subprocess.Popen(
        ["socat", "-u", f"UNIX-RECV:{sock_path}", "-"], stdout=subprocess.PIPE
    )
    until(lambda: is_socket(sock_path), listener, "socat is bound")
    assert run("unix", "send", sock_path, "--type", "dgram", input=b"two").code == 0
    assert listener.stdout.read(3) == b"two"
    listener.kill()
    listener.wait()


def test_nc_datagrams_to_ipctool(sock_path: str) -> None:
    """nc -Uu sends a datagram (then waits for replies: it is ended here). The other
    way, nc -lUu connects back to a sender's address after its first datagram, so
    it takes only senders that stay (a one-shot send is gone by then: refused)."""
    receiver = started("unix", "recv", sock_path, "--type", "dgram")
    sender = subprocess.Popen(["nc", "-Uu", sock_path], stdin=subprocess.PIPE)
    try:
        sender.stdin.write(b"via nc")
        sender.stdin.flush()
        assert receiver.communicate(timeout=10)[0] == b"via nc"
    finally:
        sender.kill()
        sender.wait()


def test_a_datagram_sender_has_an_address_to_answer(sock_path: str, tmp_path: Path) -> None:
    got = tmp_path / "got"
    with open(got, "wb") as out:
        receiver = started("unix", "recv", sock_path, "--type", "dgram", "--json", stdout=out)
    assert run("unix", "send", sock_path, "--type", "dgram", "--data", "x").code == 0
    assert receiver.wait(timeout=10) == 0
    address = json.loads(got.read_bytes())["sender"]["address"]
    assert address.startswith("@") and len(address) == 6, address  # the kernel's autobind


def test_an_unbound_sender_as_logger_is_received_with_its_credentials(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path, "--type", "dgram", "--json")
    logger = subprocess.run(["logger", "--socket", sock_path, "--", "hello log"], check=True)
    assert logger.returncode == 0
    out, err = receiver.communicate(timeout=10)
    assert err == b""
    record = json.loads(out)
    assert record["sender"]["address"] is None  # logger does not bind its socket
    assert record["sender"]["uid"] == os.geteuid() and record["sender"]["pid"] > 0
    assert record["data"].endswith("hello log"), record


def test_ten_thousand_lines_by_datagram_none_lost_in_order(sock_path: str, tmp_path: Path) -> None:
    """A unix datagram socket's queue is short (net.unix.max_dgram_qlen): the sender
    waits for room, so nothing is dropped. recv writes to a file, which it never
    waits for (into a pipe it waits until each line is read)."""
    got = tmp_path / "got"
    with open(got, "wb") as out:
        receiver = started(
            "unix", "recv", sock_path, "-t", "dgram", "--lines", "--count", "10000", stdout=out
        )
    lines = b"".join(b"line %d\n" % i for i in range(10000))
    sent = run("unix", "send", sock_path, "-t", "dgram", "--lines", input=lines, timeout=60)
    assert sent.code == 0, sent.err
    _, err = receiver.communicate(timeout=60)
    assert (receiver.returncode, err) == (0, b"")
    assert got.read_bytes() == lines


def test_seqpacket_keeps_records_and_prints_replies(sock_path: str, tmp_path: Path) -> None:
    got = tmp_path / "got"
    with open(got, "wb") as out:  # send waits for recv to close: recv must not stall
        receiver = started("unix", "recv", sock_path, "-t", "seqpacket", "--json", stdout=out)
    sent = run("unix", "send", sock_path, "-t", "seqpacket", "--lines", input=b"a\nbb\n\xff\n")
    assert sent.code == 0, sent.err
    assert receiver.wait(timeout=10) == 0
    records = [json.loads(line) for line in got.read_bytes().splitlines()]
    assert [r["size"] for r in records] == [1, 2, 1], out
    assert records[0]["sender"]["uid"] == os.geteuid()
    peer = python_peer(
        "import socket\n"
        f"s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind({sock_path!r})\n"
        "s.listen(); print('ready', flush=True)\n"
        "c, _ = s.accept()\n"
        "while m := c.recv(100): c.send(m.upper())\n"  # one reply record per record
    )
    sent = run("unix", "send", sock_path, "-t", "seqpacket", "--lines", input=b"x\nyz\n")
    assert (sent.code, sent.stdout, sent.err) == (0, b"X\nYZ\n", "")
    peer.wait(timeout=10)


def test_a_datagram_too_large_for_a_unix_socket_is_refused(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path, "--type", "dgram")
    big = run("unix", "send", sock_path, "--type", "dgram", input=b"x" * (17 << 20))
    assert_one_line_error(big, "unix", 7)
    assert run("unix", "send", sock_path, "--type", "dgram", input=b"y" * (1 << 20)).code == 0
    assert receiver.communicate(timeout=10)[0] == b"y" * (1 << 20)


def test_the_lectures_socketpair_example_under_pair(compile_peer) -> None:
    example = compile_peer("unix_socketpair.c")
    done = subprocess.run(
        command("unix", "pair", "--fd", "3", "--", str(example), "parent", "--", str(example),
                "child"),
        capture_output=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hello parent\n", b"")


def test_pair_joins_stdin_and_stdout_and_reports_both_statuses() -> None:
    script = [
        "--",
        "sh", "-c", "echo ping; read reply; echo \"first got $reply\" >&2; exit 3",
        "--",
        "sh", "-c", "read x; echo \"$x pong\"",
    ]  # fmt: skip
    done = subprocess.run(command("unix", "pair", *script), capture_output=True, timeout=30)
    lines = done.stderr.decode().splitlines()
    assert done.returncode == 3
    assert lines == ["first got ping pong", "ipctool: unix: pair: sh exit 3, sh exit 0"]
    missing = subprocess.run(
        command("unix", "pair", "--", "true", "--", "no-such-program-here"),
        capture_output=True,
        timeout=30,
    )
    assert missing.returncode == 127, missing.stderr
    assert b"no-such-program-here: command not found" in missing.stderr
    assert_one_line_error(run("unix", "pair", "--", "true"), "unix", 2)


def test_pair_of_datagram_sockets() -> None:
    """Each write a datagram: the reader takes the first one whole, as it was written."""
    done = subprocess.run(
        command("unix", "pair", "--type", "dgram", "--fd", "3", "--",
                "sh", "-c", "printf abc >&3; printf def >&3", "--", "head", "-c", "5"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    first = subprocess.run(
        command("unix", "pair", "--type", "dgram", "--fd", "3", "--",
                "sh", "-c", "printf abc >&3; printf def >&3", "--",
                sys.executable, "-c", "import os; print(os.read(3, 100))"),
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    assert (first.returncode, first.stdout) == (0, b"b'abc'\n"), first.stderr


# --- integrity ------------------------------------------------------------------------


@pytest.mark.slow
def test_256_mib_sha256_identical(sock_path: str, tmp_path: Path) -> None:
    source = tmp_path / "data"
    with open(source, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    received = tmp_path / "received"
    with open(received, "wb") as out:
        receiver = started("unix", "recv", sock_path, stdout=out)
        feeder = subprocess.Popen(["cat", str(source)], stdout=subprocess.PIPE)  # a pipe: splice
        sender = subprocess.run(
            command("unix", "send", sock_path), stdin=feeder.stdout, capture_output=True
        )
        feeder.wait()
        _, err = receiver.communicate(timeout=120)
    assert (sender.returncode, sender.stderr) == (0, b"")
    assert (receiver.returncode, err) == (0, b"")
    assert sha256(received) == sha256(source)
    assert not os.path.lexists(sock_path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- faults -------------------------------------------------------------------------


def test_reader_closing_early_is_quiet_and_the_sender_is_told(sock_path: str) -> None:
    shell = f"{IPCTOOL} unix recv {sock_path} | head -c 10"
    reader = subprocess.Popen(
        ["bash", "-c", shell], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    until(lambda: listening(sock_path), reader, "recv listens")
    sender = subprocess.run(
        command("unix", "send", sock_path),
        input=b"x" * (64 << 20),
        capture_output=True,
        timeout=60,
    )
    out, err = reader.communicate(timeout=10)
    assert (out, err) == (b"x" * 10, b"")
    assert sender.returncode == 1, sender.stderr
    assert sender.stderr.decode() in (  # recv left unread bytes behind: reset, or closed
        f"ipctool: unix: {sock_path}: the peer closed the connection\n",
        f"ipctool: unix: {sock_path}: connection reset by peer\n",
    )
    assert not os.path.lexists(sock_path), "recv left its socket file"


def test_sender_killed_mid_transfer_ends_recv_at_the_end_of_data(sock_path: str) -> None:
    """A unix stream carries no reset when a sender dies: what came is written, exit 0."""
    receiver = started("unix", "recv", sock_path)
    peer = subprocess.Popen(
        [sys.executable, "-c",
         f"import socket, signal\ns = socket.socket(socket.AF_UNIX); s.connect({sock_path!r})\n"
         "s.sendall(b'partial'); print('sent', flush=True); signal.pause()\n"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert peer.stdout.readline() == b"sent\n"
    peer.kill()
    peer.wait()
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out, err) == (0, b"partial", b"")


def test_receiver_killed_mid_transfer_is_a_named_error(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path, stdout=subprocess.DEVNULL)
    sender = subprocess.Popen(
        command("unix", "send", sock_path), stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sender.stdin.write(b"y" * (1 << 20))
    sender.stdin.flush()
    until(lambda: "connected" in run("unix", "inspect", "--json").stdout.decode(), sender)
    receiver.kill()
    receiver.wait()
    try:
        sender.stdin.write(b"z" * (4 << 20))
        sender.stdin.close()
    except BrokenPipeError:
        pass
    err = sender.stderr.read().decode()
    assert sender.wait(timeout=10) == 1, err
    assert err in (
        f"ipctool: unix: {sock_path}: the peer closed the connection\n",
        f"ipctool: unix: {sock_path}: connection reset by peer\n",
    )


def test_a_reset_connection_is_an_error(sock_path: str) -> None:
    """The peer closes with our bytes unread: the kernel resets the connection, and
    send's wait for the reply ends with that error, not a quiet end of data."""
    peer = python_peer(
        "import socket\n"
        f"s = socket.socket(socket.AF_UNIX); s.bind({sock_path!r}); s.listen()\n"
        "print('ready', flush=True)\n"
        "c, _ = s.accept(); c.recv(1, socket.MSG_PEEK)\n"  # our bytes are there, unread
        "c.close()\n"
    )
    sent = run("unix", "send", sock_path, input=b"never read", timeout=20)
    peer.wait(timeout=10)
    assert_one_line_error(sent, "unix", 1)
    assert sent.err.endswith(f"{sock_path}: connection reset by peer\n"), sent.err


def test_refused_and_missing(sock_path: str) -> None:
    missing = run("unix", "send", sock_path, input=b"x")
    assert_one_line_error(missing, "unix", 3)
    assert "no such socket" in missing.err
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()  # the file stays, nothing listens: connect is refused
    refused = run("unix", "send", sock_path, input=b"x")
    assert_one_line_error(refused, "unix", 3)
    assert "connection refused" in refused.err
    assert_one_line_error(run("unix", "send", "@" + os.path.basename(sock_path)), "unix", 3)


def test_no_descriptor_leaks_across_100_failed_connections(sock_path: str) -> None:
    """--keep-open: 100 connections that close at once, or are cut by a killed peer;
    recv's descriptors are the same after them."""
    receiver = started("unix", "recv", sock_path, "--keep-open", stdout=subprocess.DEVNULL)
    try:
        wait_until_blocked(receiver.pid)
        before = fd_count(receiver.pid)
        for i in range(100):
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(sock_path)
                if i % 2:
                    client.sendall(b"cut short")
        refused = run("unix", "send", sock_path, "--type", "dgram", input=b"x")
        assert_one_line_error(refused, "unix", 2)  # a stream socket: wrong --type
        until(lambda: not run("unix", "inspect", sock_path, "--json").json()["pending"])
        wait_until_blocked(receiver.pid)
        assert fd_count(receiver.pid) == before
        assert receiver.poll() is None
    finally:
        receiver.send_signal(signal.SIGINT)
        receiver.wait(timeout=10)
    assert receiver.returncode == 130
    assert not os.path.lexists(sock_path)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_listening_removes_the_socket_file(
    sock_path: str, sig: int, code: int
) -> None:
    receiver = started("unix", "recv", sock_path)
    wait_until_blocked(receiver.pid)
    assert is_socket(sock_path)
    receiver.send_signal(sig)
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out, err) == (code, b"", b"")
    assert not os.path.lexists(sock_path)


def test_timeout_with_nobody_connecting(sock_path: str) -> None:
    result = run("unix", "recv", sock_path, "--timeout", "0.5")
    assert_one_line_error(result, "unix", 124)
    assert not os.path.lexists(sock_path)
    quiet = run("unix", "recv", sock_path, "--keep-open", "--timeout", "0.5")
    assert (quiet.code, quiet.err) == (0, "")  # --keep-open: that long without a peer ends it


def test_keep_open_serves_one_connection_after_another(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path, "--keep-open", "--timeout", "5")
    for word in (b"one ", b"two ", b"three"):
        assert run("unix", "send", sock_path, input=word).code == 0
    receiver.send_signal(signal.SIGINT)
    out, _ = receiver.communicate(timeout=10)
    assert out == b"one two three"


# --- the socket file ------------------------------------------------------------


def test_a_stale_socket_file_is_reported_or_replaced_with_force(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()
    inode = os.lstat(sock_path).st_ino
    refused = run("unix", "recv", sock_path, "--timeout", "5")
    assert_one_line_error(refused, "unix", 6)
    assert "stale" in refused.err and "--force" in refused.err
    assert os.lstat(sock_path).st_ino == inode  # untouched
    assert not listening(sock_path)
    receiver = started("unix", "recv", sock_path, "--force")
    assert listening(sock_path)  # a new socket file (its inode number may be the old one's)
    assert run("unix", "send", sock_path, input=b"after").code == 0
    assert receiver.communicate(timeout=10)[0] == b"after"


def test_a_live_socket_is_never_replaced(sock_path: str) -> None:
    first = started("unix", "recv", sock_path)
    try:
        inode = os.lstat(sock_path).st_ino
        for extra in ((), ("--force",)):
            second = run("unix", "recv", sock_path, *extra, "--timeout", "5")
            assert_one_line_error(second, "unix", 6)
        assert os.lstat(sock_path).st_ino == inode
        assert run("unix", "send", sock_path, input=b"still mine").code == 0
        assert first.communicate(timeout=10)[0] == b"still mine"
    finally:
        first.kill()
        first.wait()
    abstract = "@" + os.path.basename(sock_path)
    holder = started("unix", "recv", abstract)
    try:
        assert_one_line_error(run("unix", "recv", abstract, "--timeout", "5"), "unix", 6)
    finally:
        holder.kill()
        holder.wait()


def test_paths_that_are_not_sockets_are_refused_untouched(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_bytes(b"keep me")
    directory = tmp_path / "dir"
    directory.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (regular, directory, fifo):
        for verb in ("send", "recv"):
            result = run("unix", verb, str(path), "--timeout", "5", input=b"x")
            assert_one_line_error(result, "unix", 2)
            assert "not a socket" in result.err
    assert regular.read_bytes() == b"keep me" and directory.is_dir() and fifo.is_fifo()
    assert_one_line_error(run("unix", "clean", str(regular)), "unix", 2)
    assert regular.exists()


def test_a_symbolic_link_is_never_bound_over(tmp_path: Path, sock_path: str) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"precious")
    link = unique_path(".link")  # in /tmp, a sticky world-writable directory
    os.symlink(target, link)
    dangling = unique_path(".dangling")
    os.symlink(tmp_path / "nothing", dangling)
    try:
        for path in (link, dangling):
            result = run("unix", "recv", path, "--timeout", "5")
            assert_one_line_error(result, "unix", 2)
            assert "symbolic link" in result.err
            assert os.path.islink(path)
        assert target.read_bytes() == b"precious"
        assert not (tmp_path / "nothing").exists()
    finally:
        os.unlink(link)
        os.unlink(dangling)


def test_send_follows_a_link_only_where_protected_symlinks_would(sock_path: str) -> None:
    """/dev/log is a link to a socket: send follows links, but not another user's
    link in a sticky world-writable directory (as fs.protected_symlinks)."""
    ours, theirs = unique_path(".link"), unique_path(".link")
    os.symlink(sock_path, ours)
    os.symlink(sock_path, theirs)
    os.lchown(theirs, 65534, 65534)  # nobody's link in /tmp
    receiver = started("unix", "recv", sock_path, "--type", "dgram")
    try:
        refused = run("unix", "send", theirs, "--type", "dgram", input=b"no")
        assert_one_line_error(refused, "unix", 2)
        assert "protected_symlinks" in refused.err
        assert run("unix", "send", ours, "--type", "dgram", input=b"via link").code == 0
        assert receiver.communicate(timeout=10)[0] == b"via link"
    finally:
        receiver.kill()
        receiver.wait()
        os.unlink(ours)
        os.unlink(theirs)


def test_mode_is_exact_despite_umask(sock_path: str) -> None:
    for mode, expected in ((None, 0o600), ("0660", 0o660)):
        args = ("--mode", mode) if mode else ()
        shell = f"umask 077; exec {IPCTOOL} unix recv {sock_path} {' '.join(args)}"
        receiver = subprocess.Popen(["bash", "-c", shell], stdout=subprocess.PIPE)
        until(lambda: listening(sock_path), receiver, "recv listens")
        assert stat.S_IMODE(os.lstat(sock_path).st_mode) == expected
        assert run("unix", "send", sock_path, input=b"").code == 0
        receiver.wait(timeout=10)


def test_keep_leaves_the_socket_file(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path, "--keep")
    assert run("unix", "send", sock_path, input=b"x").code == 0
    assert receiver.communicate(timeout=10)[0] == b"x"
    assert is_socket(sock_path)


def test_bad_targets_and_flags() -> None:
    from ipctool.api import UsageError
    from ipctool_plugins.unix.addresses import parse

    with pytest.raises(UsageError, match="NUL"):
        parse("@bad\0name")  # a command line cannot carry a NUL: the parser is asked
    too_long = "/tmp/" + "x" * 103
    for args in (
        ("send", too_long),
        ("recv", "@"),
        ("send", ""),
        ("send", "/tmp/x", "--type", "raw"),
        ("recv", "/tmp/x", "--lines"),
        ("recv", "/tmp/x", "--type", "dgram", "--keep-open"),
        ("recv", "/tmp/x", "--type", "seqpacket", "--follow"),
        ("recv", "/tmp/x", "--type", "dgram", "--follow", "--count", "2"),
        ("send", "/tmp/x", "--type", "dgram", "--no-reply"),
        ("recv", "/tmp/x", "--type", "dgram", "--stream", "--json"),
    ):
        result = run("unix", *args, input=b"x")
        assert_one_line_error(result, "unix", 2)
    assert "relative path" in run("unix", "send", too_long).err


def test_closed_stdin_connects_to_nothing(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path)
    try:
        closed = subprocess.run(
            ["bash", "-c", f"{IPCTOOL} unix send {sock_path} <&-"], capture_output=True
        )
        assert closed.returncode == 1 and b"stdin" in closed.stderr
        wait_until_blocked(receiver.pid)
        assert receiver.poll() is None  # never connected
    finally:
        receiver.kill()
        receiver.wait()


# --- inspect and clean ----------------------------------------------------------------


def test_inspect_shows_listener_connection_peer_and_queued_bytes(sock_path: str) -> None:
    peer = python_peer(
        "import socket, signal\n"
        f"s = socket.socket(socket.AF_UNIX); s.bind({sock_path!r}); s.listen()\n"
        f"c = socket.socket(socket.AF_UNIX); c.connect({sock_path!r}); c.sendall(b'x' * 1234)\n"
        "a, _ = s.accept()\n"
        f"p = socket.socket(socket.AF_UNIX); p.connect({sock_path!r})\n"  # not accepted
        "print('ready', flush=True); signal.pause()\n"
    )
    try:
        listener = run("unix", "inspect", sock_path, "--json").json()
        check_record(listener, "unix")
        assert (listener["kind"], listener["state"]) == ("stream", "listening")
        assert listener["users"] == [peer.pid] and listener["mode"] is not None
        assert (listener["pending"], listener["connections"]) == (1, 1)
        records = run("unix", "inspect", "--json").json()
        for record in records:
            check_record(record, "unix")
        mine = [r for r in records if peer.pid in r["users"]]
        accepted = next(r for r in mine if r["address"] == sock_path and r["state"] == "connected")
        assert accepted["target"].startswith("socket:[") and accepted["size"] == 1234
        client = next(r for r in mine if r["peer_inode"] == accepted["id"])
        assert (client["peer"], client["peer_queued"]) == (sock_path, 1234)
        assert run("unix", "inspect", accepted["target"], "--json").json()["id"] == accepted["id"]
        table = run("unix", "inspect")
        assert table.code == 0 and sock_path.encode() in table.stdout
    finally:
        peer.kill()
        peer.wait()


def test_clean_removes_only_socket_files_nothing_listens_on(tmp_path: Path) -> None:
    dead = tmp_path / "dead.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(dead))
    stale.close()
    live = tmp_path / "live.sock"
    receiver = started("unix", "recv", str(live))
    try:
        wait_until_blocked(receiver.pid)
        dry = run("unix", "clean", "--stale", str(tmp_path), "--older-than", "0s", "--dry-run")
        assert dry.code == 0 and dead.exists()
        cleaned = run("unix", "clean", "--stale", str(tmp_path), "--older-than", "0s", "--json")
        actions = {Path(e["target"]).name: e["action"] for e in cleaned.json()}
        assert actions == {"dead.sock": "removed"}  # a live socket is no candidate at all
        assert not dead.exists() and live.exists()
        for extra in ((), ("--force",)):  # never a live one, even with --force
            refused = run("unix", "clean", str(live), *extra)
            assert_one_line_error(refused, "unix", 6)
        assert str(receiver.pid) in refused.err
        assert "--force" not in refused.err  # it would not help
        assert run("unix", "send", str(live), input=b"alive").code == 0
        assert receiver.communicate(timeout=10)[0] == b"alive"
    finally:
        receiver.kill()
        receiver.wait()


def test_clean_of_an_abstract_name_or_unnamed_socket() -> None:
    a, b = socket.socketpair()
    try:
        inode = os.fstat(a.fileno()).st_ino
        refused = run("unix", "clean", f"socket:[{inode}]")
        assert refused.code in (4, 6), refused.err
        assert run("unix", "clean", "@no-such-ipctool-name").code == 3
    finally:
        a.close()
        b.close()


def test_another_users_listener_is_seen_but_not_probed(sock_path: str) -> None:
    """A listener of nobody's: inspect names it from the kernel's table, and recv
    refuses the path without connecting to it (the listener sees no connection)."""
    peer = subprocess.Popen(
        [*NOBODY, sys.executable, "-c",
         "import socket, sys\n"
         f"s = socket.socket(socket.AF_UNIX); s.bind({sock_path!r}); s.listen()\n"
         "print('ready', flush=True); c, _ = s.accept(); print('probed', flush=True)\n"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert peer.stdout.readline() == b"ready\n"
        record = run("unix", "inspect", sock_path, "--json").json()
        assert record["uid"] == 65534 and record["users"] == [peer.pid]
        assert_one_line_error(run("unix", "recv", sock_path, "--force"), "unix", 6)
        assert peer.poll() is None  # still waiting: nobody connected to it
    finally:
        peer.kill()
        peer.wait()


def test_seqpacket_count_not_reached_before_the_peer_closes(sock_path: str) -> None:
    receiver = started("unix", "recv", sock_path, "-t", "seqpacket", "--count", "3", "--lines")
    sent = run("unix", "send", sock_path, "-t", "seqpacket", "--no-reply", input=b"only one")
    assert sent.code == 0, sent.err
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out) == (1, b"only one\n")
    assert err.decode() == (
        f"ipctool: unix: {sock_path}: the peer closed the connection after 1 of 3 messages\n"
    )


def test_pair_passes_sigterm_on_to_both_and_waits() -> None:
    pair = subprocess.Popen(
        command("unix", "pair", "--", "sleep", "60", "--", "sleep", "61"),
        stderr=subprocess.PIPE,
    )
    until(lambda: len(children_of(pair.pid)) == 2, pair, "both commands run")
    sleepers = children_of(pair.pid)
    pair.send_signal(signal.SIGTERM)
    assert pair.wait(timeout=10) == 143
    assert all(not os.path.exists(f"/proc/{pid}") for pid in sleepers)


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def test_the_proc_fallback_sees_listeners_and_names(sock_path: str) -> None:
    """Where sock_diag is unavailable, /proc/net/unix still gives types, states, names."""
    from ipctool_plugins.unix import diag

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(sock_path)
    listener.listen()
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    abstract.bind(b"\0" + os.path.basename(sock_path).encode())
    try:
        found = {s.inode: s for s in diag.from_proc()}
        mine = found[os.fstat(listener.fileno()).st_ino]
        assert (mine.name, mine.kind, mine.listening) == (sock_path, socket.SOCK_SEQPACKET, True)
        other = found[os.fstat(abstract.fileno()).st_ino]
        assert (other.name, other.state) == ("@" + os.path.basename(sock_path), diag.CLOSE)
        assert diag.table().detailed  # here sock_diag answers: the fallback is not used
    finally:
        listener.close()
        abstract.close()
