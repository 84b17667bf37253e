"""sem and shm as a hostile user sees them: signals at the worst moment, POSIX
stream rings that end early, stdin that is a directory or never ends.

Each test here shows a bug the README's promises rule out; they are marked
xfail(strict=True) until the bug is fixed, so the suite stays green and a fix
makes them fail loudly (then drop the mark).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipctool.testing import (
    assert_one_line_error,
    command,
    run,
    start_receiver,
    wait_until_blocked,
)
from ipctool_plugins.sem import testing as sem_testing
from ipctool_plugins.shm import testing as shm_testing

INSTALLED = Path(sys.executable).with_name("ipctool")  # the sh launcher pip installs
TRIES = 5  # the signal lands after the take in nearly every try; one is enough to fail


# --- fixtures: the kit's unique targets, removed however the test ends ------------


@pytest.fixture(params=["sysv", "posix"])
def sem_target(
    request: pytest.FixtureRequest, ipctool_key: str, ipctool_name: str
) -> Iterator[str]:
    target = ipctool_key if request.param == "sysv" else ipctool_name
    yield target
    (sem_testing.remove_sysv if request.param == "sysv" else sem_testing.remove_posix)(target)


@pytest.fixture
def sem_name(ipctool_name: str) -> Iterator[str]:
    yield ipctool_name
    sem_testing.remove_posix(ipctool_name)


@pytest.fixture
def shm_name(ipctool_name: str) -> Iterator[str]:
    yield ipctool_name
    shm_testing.remove_posix(ipctool_name)


@pytest.fixture(params=["sysv", "posix"])
def shm_target(
    request: pytest.FixtureRequest, ipctool_key: str, ipctool_name: str
) -> Iterator[str]:
    target = ipctool_key if request.param == "sysv" else ipctool_name
    yield target
    (shm_testing.remove_sysv if request.param == "sysv" else shm_testing.remove_posix)(target)


def sem_value(target: str) -> int:
    result = run("sem", "inspect", target, "--json")
    assert result.code == 0, result.err
    return int(result.json()["value"])


def make_empty_sem(target: str) -> None:
    made = run("sem", "recv", target, "--create", "--nowait")
    assert made.code == 5, made.err  # created at 0, nothing to take


def post_then_signal(
    helper: Path, target: str, argv: list[str], number: int
) -> subprocess.CompletedProcess[bytes]:
    """Start `ipctool ARGV`, let it block on the empty semaphore, then post one unit and
    send signal `number` from C at once: the signal lands just as the unit is taken."""
    process = subprocess.Popen(command(*argv), stderr=subprocess.PIPE)
    try:
        wait_until_blocked(process.pid)
        kind = "posix" if target.startswith("/") else "sysv"
        subprocess.run([str(helper), kind, target, str(process.pid), str(number)], check=True)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return subprocess.CompletedProcess(argv, process.returncode, b"", err)


# --- sem: a unit taken as SIGTERM or SIGHUP lands is lost --------------------------


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_recv_ended_by_sigterm_as_the_unit_arrives_keeps_nothing(
    sem_target: str, number: int, compile_peer: Callable[..., Path]
) -> None:
    helper = compile_peer("post_then_signal.c")
    make_empty_sem(sem_target)
    lost = []
    for _ in range(TRIES):
        done = post_then_signal(helper, sem_target, ["sem", "recv", sem_target], number)
        value = sem_value(sem_target)
        if done.returncode < 0:  # killed after the verb had ended: no verdict either way
            run("sem", "recv", sem_target, "--nowait")
            continue
        if (done.returncode == 0) != (value == 0):  # exit 0 took it; anything else must not
            lost.append((done.returncode, value, done.stderr.decode(errors="replace")))
        while sem_value(sem_target):
            run("sem", "recv", sem_target, "--nowait")
    assert lost == []


def test_hold_ended_by_sigterm_as_the_unit_arrives_gives_it_back(
    sem_name: str, compile_peer: Callable[..., Path]
) -> None:
    helper = compile_peer("post_then_signal.c")
    make_empty_sem(sem_name)
    lost = []
    for _ in range(TRIES):
        argv = ["sem", "hold", sem_name, "--", "true"]
        done = post_then_signal(helper, sem_name, argv, signal.SIGTERM)
        value = sem_value(sem_name)
        if value != 1:  # whether or not COMMAND ran, the posted unit must still be there
            lost.append((done.returncode, value, done.stderr.decode(errors="replace")))
            run("sem", "send", sem_name)
        run("sem", "recv", sem_name, "--nowait")  # back to 0 for the next try
    assert lost == []


# --- shm --stream over a POSIX object: every early end is an internal error ----------


def test_posix_stream_recv_timeout_is_124(shm_name: str) -> None:
    result = run("shm", "recv", shm_name, "--stream", "--timeout", "0.2")
    assert (result.code, result.err) == (124, f"ipctool: shm: {shm_name}: timed out after 0.2 s\n")


def test_posix_stream_recv_ctrl_c_is_130(shm_name: str) -> None:
    started = start_receiver(
        "shm", "recv", shm_name, "--stream", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    process = started.process
    wait_until_blocked(process.pid)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert (process.returncode, err) == (130, b"")
    assert not os.path.exists("/dev/shm" + shm_name)


def test_posix_stream_sender_killed_is_named(shm_name: str) -> None:
    started = start_receiver(
        "shm", "recv", shm_name, "--stream", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    receiver = started.process
    sender = subprocess.Popen(command("shm", "send", shm_name, "--stream"), stdin=subprocess.PIPE)
    try:
        assert sender.stdin is not None
        sender.stdin.write(b"part of a stream")
        sender.stdin.flush()
        assert receiver.stdout is not None
        assert receiver.stdout.read(16) == b"part of a stream"  # it came through the ring
        wait_until_blocked(sender.pid)  # reading stdin for more
        sender.kill()
        sender.wait()
        _, err = receiver.communicate(timeout=30)
    finally:
        for process in (sender, receiver):
            if process.poll() is None:
                process.kill()
                process.wait()
    line = f"ipctool: shm: {shm_name}: the sender (pid {sender.pid}) is gone before the end\n"
    assert (receiver.returncode, err.decode()) == (1, line)


def test_posix_stream_recv_reader_gone_is_141(shm_name: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read recv's stdout
    try:
        started = start_receiver(
            "shm", "recv", shm_name, "--stream", stdout=write_end, stderr=subprocess.PIPE
        )
    finally:
        os.close(write_end)
    # The sender may see the receiver stop before its own end: its exit is not the point.
    run("shm", "send", shm_name, "--stream", input=b"x" * 1000)
    _, err = started.process.communicate(timeout=30)
    assert (started.process.returncode, err) == (141, b"")


# --- shm blackboard and stream: stdin that is a directory, or never ends ------------


def test_a_directory_as_stdin_of_shm_send_changes_nothing(tmp_path: Path, shm_target: str) -> None:
    assert run("shm", "send", shm_target, "--data", "keep me").code == 0
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        sent = subprocess.run(
            [str(INSTALLED), "shm", "send", shm_target], stdin=directory, capture_output=True
        )
    finally:
        os.close(directory)
    assert (sent.returncode, sent.stderr) == (2, b"ipctool: shm: stdin: is a directory\n")
    assert run("shm", "recv", shm_target).stdout == b"keep me"


def test_a_directory_as_stdin_of_shm_stream_send_makes_nothing(
    tmp_path: Path, shm_target: str
) -> None:
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        sent = subprocess.run(
            [str(INSTALLED), "shm", "send", shm_target, "--stream"],
            stdin=directory,
            capture_output=True,
        )
    finally:
        os.close(directory)
    assert (sent.returncode, sent.stderr) == (2, b"ipctool: shm: stdin: is a directory\n")
    assert run("shm", "inspect", shm_target, "--json").code == 3


def limited_memory() -> None:
    """In the child: 1 GiB of address space, so an unbounded read fails instead of
    taking the machine's memory."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_endless_stdin_into_an_existing_segment_is_too_large(shm_target: str) -> None:
    assert run("shm", "send", shm_target, "--size", "4096", "--data", "kept").code == 0
    with open("/dev/zero", "rb") as zero:
        sent = subprocess.run(
            command("shm", "send", shm_target),
            stdin=zero,
            capture_output=True,
            preexec_fn=limited_memory,
            timeout=120,
        )
    assert sent.returncode == 7, sent.stderr.decode(errors="replace")
    assert run("shm", "recv", shm_target).stdout == b"kept"
    record = run("shm", "inspect", shm_target, "--json").json()
    assert record["size"] == 4096, json.dumps(record)


# --- sem hold: a second SIGTERM gives the unit back while COMMAND still runs --------

STUBBORN = """\
import json, signal, subprocess, sys
signal.signal(signal.SIGTERM, lambda *_: print("term", flush=True))  # cleans up, goes on
print("ready", flush=True)
sys.stdin.read()  # runs until the test closes its stdin
seen = subprocess.run(COMMAND + ["sem", "inspect", TARGET, "--json"], capture_output=True)
print(json.loads(seen.stdout)["value"], flush=True)
"""


def signal_pending(pid: int, number: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    pending = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return bool(pending >> (number - 1) & 1)


def wait_delivered(pid: int, number: int) -> None:
    while signal_pending(pid, number):
        os.sched_yield()  # polling a condition: the kernel delivers it in microseconds


def test_hold_gives_the_unit_back_only_once_command_is_gone(sem_target: str) -> None:
    script = STUBBORN.replace("COMMAND", repr(command())).replace("TARGET", repr(sem_target))
    argv = ["sem", "hold", sem_target, "--create", "--value", "1", "--", sys.executable, "-c"]
    hold = subprocess.Popen(
        command(*argv, script), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert hold.stdin is not None and hold.stdout is not None
    try:
        assert hold.stdout.readline() == "ready\n"
        hold.send_signal(signal.SIGTERM)  # passed on to COMMAND, which goes on
        assert hold.stdout.readline() == "term\n"
        hold.send_signal(signal.SIGTERM)  # passed on too: each one is
        assert hold.stdout.readline() == "term\n"
        hold.stdin.close()  # now COMMAND looks at the value, while it still runs
        value_seen_by_command = hold.stdout.readline()
        hold.wait(timeout=30)
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait()
    assert value_seen_by_command == "0\n"  # still held: COMMAND is running
    assert sem_value(sem_target) == 1  # and given back once it ended


# --- shm on a /dev/shm with no room: SIGBUS ----------------------------------------

SMALL_SHM = """\
mount -t tmpfs -o size=64k tmpfs /dev/shm || exit 99
"$@"
code=$?
ls -A /dev/shm
exit $code
"""


@pytest.mark.parametrize(
    "stream",
    [pytest.param(False, id="blackboard"), pytest.param(True, id="stream")],
)
def test_a_full_dev_shm_is_an_error_line_not_sigbus(ipctool_name: str, stream: bool) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs in a private mount namespace needs root")
    argv = command("shm", "send", ipctool_name, *(["--stream"] if stream else []))
    # The namespace's tmpfs, and anything left in it, goes when the namespace ends.
    done = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", SMALL_SHM, "sh", *argv],
        input=os.urandom(200_000),  # more than the 64 KiB tmpfs holds
        capture_output=True,
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 7, err  # too large: for the room there is
    assert err.startswith("ipctool: shm: ") and err.count("\n") == 1, err
    assert "internal error" not in err, err
    assert done.stdout == b""  # nothing left in /dev/shm


# --- shm --stream: a stream that exactly fills the ring -----------------------------


def test_a_stream_that_exactly_fills_the_ring_lets_the_sender_end(shm_target: str) -> None:
    capacity = 4096 - 256  # --size 4096 less the ring's header
    payload = os.urandom(capacity)
    # --timeout only bounds the bug's wait; a sender that ends at once never reaches it
    sent = run("shm", "send", shm_target, "--stream", "--size", "4096", "--timeout", "2",
               input=payload)  # fmt: skip
    assert (sent.code, sent.err) == (0, "")
    received = run("shm", "recv", shm_target, "--stream")
    assert (received.code, received.stdout) == (0, payload)


def test_a_sender_waiting_on_a_full_ring_ends_when_its_input_does(shm_target: str) -> None:
    capacity = 4096 - 256
    payload = os.urandom(capacity)
    sender = subprocess.Popen(
        command("shm", "send", shm_target, "--stream", "--size", "4096"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert sender.stdin is not None
    try:
        sender.stdin.write(payload)
        sender.stdin.flush()
        wait_until_blocked(sender.pid)  # the ring is full, the input still open
        sender.stdin.close()  # now the input ends: the whole stream is in the ring
        sender.wait(timeout=20)  # a bound on the bug's wait, not a speed
        assert sender.stderr is not None
        err = sender.stderr.read()
    finally:
        if sender.poll() is None:
            sender.kill()
            sender.wait()
    assert (sender.returncode, err) == (0, b"")
    received = run("shm", "recv", shm_target, "--stream")
    assert (received.code, received.stdout) == (0, payload)


SPARSE_SHM = """\
mount -t tmpfs -o size=64k tmpfs /dev/shm || exit 99
truncate -s 1M "/dev/shm$NAME" || exit 98
"$@"
code=$?
du -k "/dev/shm$NAME"
exit $code
"""


@pytest.mark.parametrize("stream", [False, True], ids=["blackboard", "stream"])
def test_a_sparse_object_on_a_full_dev_shm_is_an_error_line_not_sigbus(
    ipctool_name: str, stream: bool
) -> None:
    """Another program sized the object with ftruncate and tmpfs has no room for its
    pages: writing into it must fail as a line (and reserve nothing), not SIGBUS."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs in a private mount namespace needs root")
    argv = command("shm", "send", ipctool_name, *(["--stream"] if stream else []))
    done = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", SPARSE_SHM, "sh", *argv],
        input=os.urandom(200_000),
        capture_output=True,
        env={**os.environ, "NAME": ipctool_name},
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 7, err
    assert err == f"ipctool: shm: {ipctool_name}: " + (
        "1048576" if stream else "200000"
    ) + " bytes: no room for them in /dev/shm\n"
    assert done.stdout.split()[0] == b"0"  # not a page of it taken


# --- shm --stream: the ring removed before the peer came ----------------------------


@pytest.mark.parametrize("sending", [False, True], ids=["receiver", "sender"])
def test_a_ring_removed_before_its_peer_came_ends_the_wait(
    shm_target: str, sending: bool
) -> None:
    """Nobody can join a ring whose segment was removed (ipcrm, shm clean --force):
    the side waiting for its peer must end (exit 3), not wait out --timeout."""
    verb = "send" if sending else "recv"
    side = start_receiver(
        "shm", verb, shm_target, "--stream", "--size", "4096",
        stdin=subprocess.PIPE if sending else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ).process  # fmt: skip
    try:
        if sending:
            assert side.stdin is not None
            side.stdin.write(os.urandom(8192))  # more than the ring holds: it waits for room
            side.stdin.flush()
        wait_until_blocked(side.pid)
        if shm_target.startswith("/"):
            shm_testing.remove_posix(shm_target)
        else:
            subprocess.run(["ipcrm", "-M", shm_target], check=True)
        side.wait(timeout=30)  # a bound on the bug's wait, not a speed
    finally:
        if side.poll() is None:
            side.kill()
            side.wait()
    assert side.stderr is not None
    err = side.stderr.read().decode()
    role = "receiver" if sending else "sender"
    expected = f"ipctool: shm: {shm_target}: was removed before a {role} came\n"
    assert (side.returncode, err) == (3, expected)


def test_a_file_ring_removed_before_its_sender_came_ends_the_wait(tmp_path: Path) -> None:
    path = tmp_path / "ring"
    receiver = start_receiver(
        "mmap", "recv", str(path), "--stream", "--size", "4096",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    ).process  # fmt: skip
    try:
        wait_until_blocked(receiver.pid)
        path.unlink()
        receiver.wait(timeout=30)  # a bound on the bug's wait, not a speed
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert receiver.stderr is not None
    err = receiver.stderr.read().decode()
    expected = f"ipctool: mmap: {path}: was removed before a sender came\n"
    assert (receiver.returncode, err) == (3, expected)


# --- a blackboard write over a running stream ---------------------------------------


def test_a_blackboard_write_over_a_running_stream_is_refused(shm_target: str) -> None:
    receiver = start_receiver(
        "shm", "recv", shm_target, "--stream", "--size", "4096",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ).process  # fmt: skip
    try:
        wait_until_blocked(receiver.pid)
        board = run("shm", "send", shm_target, "--data", "over the header")
        payload = os.urandom(100_000)
        streamed = run("shm", "send", shm_target, "--stream", input=payload)
        out, err = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    assert board.code == 6, board.err
    assert f"carries a running stream (receiver pid {receiver.pid}); not written" in board.err
    assert streamed.code == 0, streamed.err
    assert (receiver.returncode, err, out) == (0, b"", payload)


FULL_SPARSE_SHM = """\
mount -t tmpfs -o size=64k tmpfs /dev/shm || exit 99
printf 'hello' > "/dev/shm$NAME" && truncate -s 1M "/dev/shm$NAME" || exit 98
head -c 65536 /dev/zero > /dev/shm/filler 2>/dev/null  # the tmpfs is full now
exec "$@"
"""


@pytest.mark.parametrize("hex_dump", [False, True], ids=["raw", "hex"])
def test_recv_of_a_sparse_object_on_a_full_dev_shm_reads_its_holes(
    ipctool_name: str, hex_dump: bool
) -> None:
    """Reading a hole through a mapping takes a page; a full tmpfs has none (SIGBUS)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs in a private mount namespace needs root")
    argv = command("shm", "recv", ipctool_name, *(["--hex"] if hex_dump else []))
    done = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", FULL_SPARSE_SHM, "sh", *argv],
        capture_output=True,
        env={**os.environ, "NAME": ipctool_name},
    )
    assert (done.returncode, done.stderr) == (0, b"")
    expected = b"00000000  68 65 6c 6c 6f" if hex_dump else b"hello"
    assert done.stdout.startswith(expected), done.stdout[:80]


def test_recv_of_a_large_sparse_object_reads_only_what_it_prints(ipctool_name: str) -> None:
    """A 256 MiB object holding a C string: recv with 128 MiB of memory prints it
    (a whole copy to find the NUL would not fit)."""
    path = "/dev/shm" + ipctool_name
    with open(path, "wb") as f:  # sparse: the string, then a hole
        f.write(b"hi\0")
        f.truncate(256 << 20)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (128 << 20, 128 << 20))

    try:
        done = subprocess.run(
            command("shm", "recv", ipctool_name), capture_output=True, preexec_fn=limited
        )
    finally:
        os.unlink(path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hi", b"")


def test_cstring_send_into_a_sparse_object_on_a_full_dev_shm_is_an_error_line(
    ipctool_name: str,
) -> None:
    """--cstring voids an old trailer of ipctool's, so it reads the object's last bytes:
    a hole there takes a page too, reserved first (SIGBUS on a full /dev/shm)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs in a private mount namespace needs root")
    argv = command("shm", "send", ipctool_name, "--cstring", "--data", "hi")
    done = subprocess.run(
        ["unshare", "--mount", "--", "sh", "-c", FULL_SPARSE_SHM, "sh", *argv],
        capture_output=True,
        env={**os.environ, "NAME": ipctool_name},
    )
    err = done.stderr.decode(errors="replace")
    assert (done.returncode, err) == (
        7,
        f"ipctool: shm: {ipctool_name}: 16 bytes: no room for them in /dev/shm\n",
    )


# --- shm: sizes past what a segment can be ------------------------------------------

HUGE = str(2**63)


@pytest.mark.parametrize(
    "args",
    [
        ("send", "--size", HUGE, "--data", "x"),
        ("send", "--size", str(2**63 - 1), "--data", "x"),
        ("send", "--offset", HUGE, "--data", "x"),
        ("send", "--offset", str(2**63 - 1), "--data", "x"),
        ("send", "--stream", "--size", HUGE),
        ("recv", "--stream", "--size", HUGE),
    ],
    ids=["size-2**63", "size-2**63-1", "offset-2**63", "offset-2**63-1", "send", "recv"],
)
def test_impossible_sizes_for_a_new_segment_are_too_large(
    shm_target: str, args: tuple[str, ...]
) -> None:
    """Too large (7), as the kernel says of 2**63-1 and of any size past shmmax: a size
    no segment can have, and nothing made."""
    verb, *rest = args
    done = run("shm", verb, shm_target, *rest)
    assert_one_line_error(done, "shm", 7)
    assert "internal error" not in done.err
    assert run("shm", "inspect", shm_target).code == 3  # nothing made


def test_an_empty_posix_object_is_no_ring(shm_name: str) -> None:
    """An object another program made and never sized (shm_open, no ftruncate) holds
    no ring: exit 2 for either side, and it stays."""
    with open(f"/dev/shm{shm_name}", "wb"):
        pass
    for verb in ("send", "recv"):
        done = run("shm", verb, shm_name, "--stream", input=b"x")
        assert_one_line_error(done, "shm", 2)
        assert "internal error" not in done.err
    assert os.path.getsize(f"/dev/shm{shm_name}") == 0
