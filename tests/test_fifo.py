"""fifo against the lecture's C programs, cat and mkfifo, with faults and bad paths."""

from __future__ import annotations

import hashlib
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import NOBODY

from ipctool.testing import (
    assert_one_line_error,
    command,
    run,
    start_receiver,
    unique_path,
    wait_until_blocked,
)


def started(*args: str, stdout: object = subprocess.PIPE) -> subprocess.Popen:
    """ipctool ARGS, once it said it is ready (its ready line on IPCTOOL_READY_FD)."""
    return start_receiver(
        *args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE
    ).process


@pytest.fixture
def fifo_path() -> str:
    path = unique_path(".fifo")
    yield path
    if os.path.lexists(path):
        os.unlink(path)


def until_exists(path: str, proc: subprocess.Popen) -> None:
    """Poll (a condition, not a fixed wait) until the path exists, while proc runs."""
    import time

    deadline = time.monotonic() + 10
    while not os.path.lexists(path):
        assert proc.poll() is None, f"exited {proc.returncode} before {path} existed"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.002)


def c_string(text: str) -> str:
    return '"' + text + '"'


# --- real peers ----------------------------------------------------------------


def test_c_writer_to_ipctool(compile_peer, fifo_path: str) -> None:
    writer = compile_peer("fifo_writer.c", IPCTOOL_TEST_FIFO=c_string(fifo_path))
    # The C writer makes the FIFO itself (and fails if it exists), then blocks in open.
    proc = subprocess.Popen([writer], stderr=subprocess.PIPE)
    wait_until_blocked(proc.pid)
    got = run("fifo", "recv", fifo_path, "--timeout", "10")
    assert proc.wait(timeout=10) == 0, proc.stderr.read()
    assert (got.code, got.stdout) == (0, b"Hello fifo\0")  # sizeof(data): the NUL too
    assert stat.S_ISFIFO(os.lstat(fifo_path).st_mode), "ipctool removed a FIFO it did not make"


def test_ipctool_to_c_reader(compile_peer, fifo_path: str) -> None:
    reader = compile_peer("fifo_reader.c", IPCTOOL_TEST_FIFO=c_string(fifo_path))
    proc = subprocess.Popen(
        command("fifo", "send", fifo_path, "--timeout", "10"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    proc.stdin.write(b"from ipctool\0")
    proc.stdin.close()
    until_exists(fifo_path, proc)  # the sender makes the FIFO, then waits for a reader
    out = subprocess.run([reader], capture_output=True, timeout=10, check=True)
    assert proc.wait(timeout=10) == 0
    assert out.stdout == b"data: from ipctool\n"


def test_cat_and_mkfifo_on_either_end(fifo_path: str) -> None:
    os.mkfifo(fifo_path, 0o600)
    data = os.urandom(200_000)
    cat = subprocess.Popen(["cat", fifo_path], stdout=subprocess.PIPE)
    sent = run("fifo", "send", fifo_path, input=data)
    assert sent.code == 0, sent.err
    assert cat.communicate(timeout=10)[0] == data
    receiver = started("fifo", "recv", fifo_path)
    with open(fifo_path, "wb") as writer:
        writer.write(data)
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out) == (0, data), err
    assert stat.S_ISFIFO(os.lstat(fifo_path).st_mode)  # made by mkfifo: kept


# --- integrity -------------------------------------------------------------------


@pytest.mark.slow
def test_256_mib_sha256_identical(fifo_path: str, tmp_path: Path) -> None:
    source = tmp_path / "data"
    with open(source, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    received = tmp_path / "received"
    with open(received, "wb") as out:
        receiver = started("fifo", "recv", fifo_path, stdout=out)
        with open(source, "rb") as data:
            sender = subprocess.run(
                command("fifo", "send", fifo_path), stdin=data, capture_output=True, check=False
            )
        _, err = receiver.communicate(timeout=120)
    assert sender.returncode == 0, sender.stderr
    assert receiver.returncode == 0, err
    assert sha256(received) == sha256(source)
    assert not os.path.lexists(fifo_path), "the FIFO ipctool made was left behind"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- faults ------------------------------------------------------------------------


def test_reader_closing_early_is_quiet(fifo_path: str) -> None:
    shell = f"{' '.join(command())} fifo recv {fifo_path} | head -c 10"
    reader = subprocess.Popen(["bash", "-c", shell], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    until_exists(fifo_path, reader)
    with open(fifo_path, "wb") as writer:  # more than head wants, in pieces
        try:
            for _ in range(64):
                writer.write(b"x" * 65536)
                writer.flush()
        except BrokenPipeError:
            pass  # ipctool went away after head did: expected
    out, err = reader.communicate(timeout=10)
    assert (out, err) == (b"x" * 10, b"")


def test_writer_killed_mid_stream_ends_recv_at_eof(fifo_path: str) -> None:
    receiver = started("fifo", "recv", fifo_path)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os\nf=os.open({fifo_path!r}, os.O_WRONLY)\n"
            "os.write(f, b'partial')\nprint('wrote', flush=True)\nimport signal; signal.pause()\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert writer.stdout.readline() == b"wrote\n"
    writer.kill()
    writer.wait()
    out, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, out, err) == (0, b"partial", b"")


def test_reader_killed_mid_stream_is_a_named_error(fifo_path: str) -> None:
    os.mkfifo(fifo_path, 0o600)
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os\nf=os.open({fifo_path!r}, os.O_RDONLY)\n"
            "os.read(f, 1)\nprint('read', flush=True)\nimport signal; signal.pause()\n",
        ],
        stdout=subprocess.PIPE,
    )
    sender = subprocess.Popen(
        command("fifo", "send", fifo_path), stdin=subprocess.PIPE, stderr=subprocess.PIPE
    )
    sender.stdin.write(b"y" * 4096)
    sender.stdin.flush()
    assert reader.stdout.readline() == b"read\n"
    reader.kill()
    reader.wait()
    try:
        sender.stdin.write(b"z" * (1 << 20))
        sender.stdin.close()
    except BrokenPipeError:
        pass
    err = sender.stderr.read().decode()
    assert sender.wait(timeout=10) == 1, err
    assert err.count("\n") == 1 and err.startswith(f"ipctool: fifo: {fifo_path}: "), err
    assert "Traceback" not in err


def test_send_from_a_silent_terminal_times_out(fifo_path: str) -> None:
    """stdin a terminal: after what was typed, send waits for more in poll, where
    --timeout ends it. A splice straight from the terminal waited in the kernel
    instead, deaf to --timeout, holding the FIFO's pipe lock: the reader's reads
    (and inspect's) hung there too, unkillable, until someone typed."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    os.mkfifo(fifo_path, 0o600)
    reader = os.open(fifo_path, os.O_RDONLY | os.O_NONBLOCK)
    os.write(master, b"typed\n")
    sender = subprocess.Popen(
        command("fifo", "send", fifo_path, "--timeout", "1"), stdin=slave, stderr=subprocess.PIPE
    )
    try:
        err = sender.communicate(timeout=10)[1]
        # Only now read the FIFO: with the lock held, this read would hang the test.
        assert (sender.returncode, os.read(reader, 100)) == (124, b"typed\n"), err
        assert err.decode() == f"ipctool: fifo: {fifo_path}: timed out after 1 s\n"
    finally:
        sender.kill()
        sender.wait()
        for fd in (reader, master, slave):
            os.close(fd)


def test_no_writer_times_out(fifo_path: str) -> None:
    result = run("fifo", "recv", fifo_path, "--timeout", "0.5")
    assert_one_line_error(result, "fifo", 124)
    assert not os.path.lexists(fifo_path)  # made by ipctool: removed on the way out


def test_no_reader_times_out(fifo_path: str) -> None:
    result = run("fifo", "send", fifo_path, "--timeout", "0.5", input=b"x")
    assert_one_line_error(result, "fifo", 124)
    assert not os.path.lexists(fifo_path)


@pytest.mark.parametrize("verb", ["recv", "send"])
def test_ctrl_c_while_waiting_for_the_other_end(verb: str, fifo_path: str) -> None:
    proc = started("fifo", verb, fifo_path)
    wait_until_blocked(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert (proc.returncode, err) == (130, b"")
    assert not os.path.lexists(fifo_path)


def test_nowait_says_whether_a_writer_is_there(fifo_path: str) -> None:
    os.mkfifo(fifo_path, 0o600)
    assert_one_line_error(run("fifo", "recv", fifo_path, "--nowait"), "fifo", 5)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os\nf=os.open({fifo_path!r}, os.O_RDWR)\n"
            "print('open', flush=True)\nos.write(f, b'here')\nimport signal; signal.pause()\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert writer.stdout.readline() == b"open\n"
        got = run("fifo", "recv", fifo_path, "--nowait", "--timeout", "0.5")
        assert got.stdout == b"here"  # then the idle timeout: the writer never closes
        assert got.code == 124
    finally:
        writer.kill()
        writer.wait()


# --- bad paths: usage errors, nothing touched -----------------------------------------


def test_paths_that_are_not_fifos_are_refused(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_bytes(b"keep me")
    fifo = tmp_path / "real.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.fifo"
    link.symlink_to(fifo)
    for path, what in ((regular, "regular file"), (tmp_path, "directory"), (link, "symbolic")):
        for verb in ("send", "recv"):
            result = run("fifo", verb, str(path), "--timeout", "1", input=b"x")
            assert_one_line_error(result, "fifo", 2)
            assert what in result.err
    assert regular.read_bytes() == b"keep me"
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_missing_directory_and_long_path(tmp_path: Path) -> None:
    missing = run("fifo", "recv", str(tmp_path / "no" / "such.fifo"), "--timeout", "1")
    assert_one_line_error(missing, "fifo", 3)
    long = run("fifo", "recv", str(tmp_path / ("x" * 300)), "--timeout", "1")
    assert_one_line_error(long, "fifo", 2)


def test_another_users_fifo_in_sticky_tmp() -> None:
    path = f"/tmp/ipctool-test-root-{os.getpid()}.fifo"
    os.mkfifo(path, 0o600)
    try:
        result = subprocess.run(
            [*NOBODY, *command("fifo", "recv", path, "--timeout", "1")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 4, result.stderr
        assert result.stderr.decode().count("\n") == 1
        cleaned = subprocess.run(
            [*NOBODY, *command("fifo", "clean", path, "--force")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert cleaned.returncode == 4, cleaned.stderr
        assert stat.S_ISFIFO(os.lstat(path).st_mode)
    finally:
        os.unlink(path)


def test_mode_is_exact_despite_umask(fifo_path: str) -> None:
    receiver = subprocess.Popen(
        command("fifo", "recv", fifo_path, "--mode", "0622", "--keep", "--timeout", "10"),
        stdout=subprocess.PIPE,
        preexec_fn=lambda: os.umask(0o077),
    )
    until_exists(fifo_path, receiver)
    assert stat.S_IMODE(os.lstat(fifo_path).st_mode) == 0o622
    assert run("fifo", "send", fifo_path, input=b"m").code == 0
    assert receiver.communicate(timeout=10)[0] == b"m"


# --- inspect and clean -------------------------------------------------------------


def test_inspect_shows_readers_writers_and_bytes_waiting(fifo_path: str) -> None:
    os.mkfifo(fifo_path, 0o640)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os\nr=os.open({fifo_path!r}, os.O_RDONLY|os.O_NONBLOCK)\n"
            f"w=os.open({fifo_path!r}, os.O_WRONLY)\nos.write(w, b'12345')\n"
            "print('ready', flush=True)\nimport signal; signal.pause()\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"ready\n"
        record = run("fifo", "inspect", fifo_path, "--json").json()
        assert (record["mode"], record["size"], record["capacity"]) == ("0640", 5, 65536)
        assert record["users"] == [holder.pid]
        assert [r["pid"] for r in record["readers"]] == [holder.pid]
        assert [w["pid"] for w in record["writers"]] == [holder.pid]
        listed = run("fifo", "inspect", "--json").json()  # no target: held open anywhere
        assert fifo_path in [r["target"] for r in listed]
        in_dir = run("fifo", "inspect", os.path.dirname(fifo_path), "--json").json()
        assert fifo_path in [r["target"] for r in in_dir]
        refused = run("fifo", "clean", fifo_path)
        assert_one_line_error(refused, "fifo", 6)
        assert os.path.lexists(fifo_path)
    finally:
        holder.kill()
        holder.wait()


def test_clean_stale_in_a_directory(tmp_path: Path) -> None:
    old, fresh, held = (tmp_path / n for n in ("old.fifo", "fresh.fifo", "held.fifo"))
    for path in (old, fresh, held):
        os.mkfifo(path, 0o600)
    os.utime(old, (1, 1))
    os.utime(held, (1, 1))
    fd = os.open(held, os.O_RDWR)  # this test process holds it: in use
    holder = subprocess.Popen(["cat"], stdin=subprocess.PIPE, pass_fds=(fd,))
    os.close(fd)
    try:
        dry = run("fifo", "clean", "--stale", str(tmp_path), "--dry-run", "--json")
        assert dry.code == 0, dry.err
        actions = {Path(r["target"]).name: r["action"] for r in dry.json()}
        assert actions == {"old.fifo": "would remove", "held.fifo": "skipped"}
        assert old.exists()
        done = run("fifo", "clean", "--stale", str(tmp_path), "--json")
        assert {Path(r["target"]).name: r["action"] for r in done.json()} == {
            "old.fifo": "removed",
            "held.fifo": "skipped",
        }
        assert not os.path.lexists(old) and fresh.exists() and held.exists()
        assert_one_line_error(run("fifo", "clean", str(tmp_path)), "fifo", 2)
    finally:
        holder.kill()
        holder.wait()


# --- found by trying to break it -------------------------------------------------------


def test_a_file_put_where_the_fifo_was_is_never_removed(fifo_path: str) -> None:
    """send waits for a reader; meanwhile the FIFO is replaced by a file. The file
    may even get the FIFO's old inode number: it must survive send's cleanup."""
    sender = started("fifo", "send", fifo_path)
    os.unlink(fifo_path)
    with open(fifo_path, "w") as f:
        f.write("precious")
    sender.send_signal(signal.SIGINT)
    _, err = sender.communicate(timeout=10)
    assert sender.returncode == 130, err
    with open(fifo_path) as f:
        assert f.read() == "precious"


def test_peers_waiting_to_open_make_it_in_use(fifo_path: str) -> None:
    os.mkfifo(fifo_path, 0o600)
    writer = subprocess.Popen(["sh", "-c", f"echo hello > '{fifo_path}'"])  # blocks in open
    try:
        wait_until_blocked(writer.pid)
        refused = run("fifo", "clean", fifo_path)
        assert_one_line_error(refused, "fifo", 6)
        assert str(writer.pid) in refused.err
    finally:
        writer.kill()
        writer.wait()
    os.unlink(fifo_path)
    sender = started("fifo", "send", fifo_path)  # waits for a reader: holds the path
    try:
        assert_one_line_error(run("fifo", "clean", fifo_path), "fifo", 6)
        stale = run(
            "fifo", "clean", "--stale", "/tmp", "--older-than", "0", "--dry-run", "--json"
        )
        actions = {r["target"]: r["action"] for r in stale.json()}
        assert actions.get(fifo_path) == "skipped", actions
        assert os.path.lexists(fifo_path)
    finally:
        sender.kill()
        sender.wait()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_term_and_hup_remove_the_fifo_it_made(fifo_path: str, sig: int, code: int) -> None:
    receiver = started("fifo", "recv", fifo_path)
    wait_until_blocked(receiver.pid)
    receiver.send_signal(sig)
    _, err = receiver.communicate(timeout=10)
    assert (receiver.returncode, err) == (code, b"")
    assert not os.path.lexists(fifo_path)


def test_nowait_sees_another_users_writer() -> None:
    path = f"/tmp/ipctool-test-nowait-{os.getpid()}.fifo"
    os.mkfifo(path, 0o666)
    os.chmod(path, 0o666)
    holder = os.open(path, os.O_RDWR)  # root's writer, invisible to nobody in /proc
    try:
        os.write(holder, b"")  # nothing waits: only the writer tells
        got = subprocess.run(
            [*NOBODY, *command("fifo", "recv", path, "--nowait", "--timeout", "0.3")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert got.returncode == 124, got.stderr  # not 5: a writer is there (and says nothing)
    finally:
        os.close(holder)
        os.unlink(path)


def test_closed_stdio_and_bad_ready_fds_touch_nothing(fifo_path: str) -> None:
    shell = f"{' '.join(command())} fifo send {fifo_path} <&-"
    closed = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=30)
    assert (closed.returncode, closed.stderr) == (1, b"ipctool: fifo: stdin: bad file descriptor\n")
    for ready in ("0", "1", "2"):
        bad = run("fifo", "recv", fifo_path, "--ready-fd", ready)
        assert_one_line_error(bad, "fifo", 2)
    assert not os.path.lexists(fifo_path)


def test_send_data_option(fifo_path: str) -> None:
    receiver = started("fifo", "recv", fifo_path)
    assert run("fifo", "send", fifo_path, "--data", "hello").code == 0
    assert receiver.communicate(timeout=10)[0] == b"hello"


def test_a_reader_that_leaves_after_taking_everything_is_no_error(fifo_path: str) -> None:
    """The reader reads all the data and closes at once: the splice that would
    have found stdin's end meets the reader's absence first (EPIPE). That is a
    whole transfer, exit 0, not "the reader closed the FIFO". Racy by nature,
    so tried 15 times (it failed about one time in ten)."""
    data = b"from ipctool\0"
    for _ in range(15):
        proc = subprocess.Popen(
            command("fifo", "send", fifo_path, "--timeout", "10"),
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        proc.stdin.write(data)
        proc.stdin.close()
        until_exists(fifo_path, proc)
        fd = os.open(fifo_path, os.O_RDONLY)
        got = b""
        while len(got) < len(data):
            got += os.read(fd, 80)
        os.close(fd)  # at once, as the lecture's reader does
        err = proc.stderr.read()
        assert (proc.wait(timeout=10), got, err) == (0, data, b"")


def test_a_directory_as_stdin_sends_no_empty_stream(tmp_path: Path, fifo_path: str) -> None:
    """The launcher puts /dev/null in place of a directory stdin; a reader of an
    EOF there would see an empty stream, and a FIFO would be made for nothing."""
    installed = Path(sys.executable).with_name("ipctool")
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        sent = subprocess.run(
            [str(installed), "fifo", "send", fifo_path, "--timeout", "1"],
            stdin=directory,
            capture_output=True,
        )
    finally:
        os.close(directory)
    assert (sent.returncode, sent.stderr) == (2, b"ipctool: fifo: stdin: is a directory\n")
    assert not os.path.lexists(fifo_path)
