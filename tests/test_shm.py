"""shm against real kernel segments, the lecture's C programs, a C ring peer and util-linux."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sysv_ipc
from conftest import run_as_nobody
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipctool.testing import (
    assert_one_line_error,
    command,
    run,
    start_receiver,
    wait_until_blocked,
)
from ipctool.testkit import unique_key, unique_name
from ipctool_plugins.shm.testing import remove_sysv

BLACKBOARD_SIZES = st.binary(max_size=3000)


def segment_of(key: str) -> sysv_ipc.SharedMemory:
    number = int(key, 16)
    return sysv_ipc.SharedMemory(number - (1 << 32) if number > 0x7FFFFFFF else number)


def segment_id(key: str) -> int:
    segment = segment_of(key)
    segment.detach()  # this test process is no user of it
    return int(segment.id)


def segment_bytes(key: str, size: int) -> bytes:
    segment = segment_of(key)
    try:
        return bytes(segment.read(size))
    finally:
        segment.detach()


def ipcs_row(key: str) -> list[str] | None:
    out = subprocess.run(["ipcs", "-m"], capture_output=True, text=True, check=True).stdout
    want = f"0x{int(key, 0):08x}"
    return next((line.split() for line in out.splitlines() if line.startswith(want)), None)


def exists(target: str) -> bool:
    return run("shm", "inspect", target, "--json").code == 0


# --- blackboard --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sysv", "posix"])
def test_exact_bytes_with_trailing_nuls(kind: str, sysv_key: str, posix_name: str) -> None:
    target = sysv_key if kind == "sysv" else posix_name
    data = b"\x00binary\xff\x00\n\x00\x00"
    assert run("shm", "send", target, input=data).code == 0
    got = run("shm", "recv", target)
    assert (got.code, got.stdout) == (0, data)
    # a shorter write: the end moves with it
    assert run("shm", "send", target, "--data", "hi").code == 0
    assert run("shm", "recv", target).stdout == b"hi"


def test_new_segment_is_sized_to_fit_and_0600(sysv_key: str, posix_name: str) -> None:
    assert run("shm", "send", sysv_key, "--data", "abc").code == 0
    row = ipcs_row(sysv_key)
    assert row is not None, "ipcs -m does not list the segment"
    assert row[3] == "600" and int(row[4]) == 3 + 16  # data and the trailer
    assert run("shm", "send", posix_name, "--data", "abc", "--mode", "0640").code == 0
    st_ = os.stat("/dev/shm" + posix_name)
    assert (st_.st_mode & 0o777, st_.st_size) == (0o640, 19)


def test_offset_size_length_and_hex(sysv_key: str) -> None:
    assert run("shm", "send", sysv_key, "--size", "256", "--data", "head").code == 0
    assert run("shm", "send", sysv_key, "--offset", "100", "--data", "tail").code == 0
    assert run("shm", "recv", sysv_key, "--offset", "100").stdout == b"tail"
    whole = run("shm", "recv", sysv_key).stdout  # the end is where the last send stopped
    assert len(whole) == 104 and whole.startswith(b"head\0")
    assert run("shm", "recv", sysv_key, "--length", "4").stdout == b"head"
    dump = run("shm", "recv", sysv_key, "--offset", "100", "--hex").stdout.decode()
    assert dump == "00000064  74 61 69 6c                                       |tail|\n00000068\n"


def test_cstring_layout_voids_the_trailer(sysv_key: str) -> None:
    assert run("shm", "send", sysv_key, "--size", "64", "--data", "longer text").code == 0
    assert run("shm", "send", sysv_key, "--cstring", "--data", "short").code == 0
    raw = segment_bytes(sysv_key, 64)
    assert raw.startswith(b"short\0") and raw[-16:] == bytes(16)
    assert run("shm", "recv", sysv_key).stdout == b"short"  # up to the NUL


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=BLACKBOARD_SIZES)
def test_any_bytes_through_the_blackboard(data: bytes) -> None:
    target = hex(unique_key())
    try:
        assert run("shm", "send", target, input=data).code == 0
        assert run("shm", "recv", target).stdout == data
    finally:
        remove_sysv(target)


# --- the lecture's C programs and util-linux ----------------------------------------


def test_lecture_writer_to_ipctool(compile_peer, sysv_key: str) -> None:
    writer = compile_peer("shm_writer.c", IPCTOOL_TEST_KEY=sysv_key)
    subprocess.run([writer], check=True)
    got = run("shm", "recv", sysv_key)
    assert (got.code, got.stdout) == (0, b"Hello, world")  # not 1024 bytes of padding
    assert run("shm", "recv", sysv_key, "--length", "13").stdout == b"Hello, world\0"


def test_ipctool_to_lecture_reader(compile_peer, sysv_key: str) -> None:
    reader = compile_peer("shm_reader.c", IPCTOOL_TEST_KEY=sysv_key)
    # The reader asks for 1024 bytes: a smaller segment would be EINVAL to its shmget.
    sent = run("shm", "send", sysv_key, "--cstring", "--size", "1024", "--data", "Hello, world")
    assert sent.code == 0, sent.err
    out = subprocess.run([reader], capture_output=True, check=True, timeout=10).stdout
    assert out == b"data is: Hello, world!\n"
    assert ipcs_row(sysv_key) is None  # the reader removes it


def test_ipcmk_segment_inspected_and_cleaned() -> None:
    made = subprocess.run(["ipcmk", "-M", "4096"], capture_output=True, text=True, check=True)
    shmid = made.stdout.split()[-1]
    try:
        listed = run("shm", "inspect", "--json").json()
        record = next(r for r in listed if r["id"] == int(shmid))
        assert (record["kind"], record["size"], record["attached"]) == ("sysv", 4096, 0)
        assert record["target"] == f"--id={shmid}" or record["target"].startswith("0x")
        cleaned = run("shm", "clean", "--id", shmid)
        assert cleaned.code == 0, cleaned.err
        assert (
            str(shmid)
            not in subprocess.run(["ipcs", "-m"], capture_output=True, text=True).stdout.split()
        )
    finally:
        subprocess.run(["ipcrm", "-m", shmid], capture_output=True, check=False)


def test_inspect_shows_attached_processes_and_clean_refuses(sysv_key: str) -> None:
    assert run("shm", "send", sysv_key, "--data", "x").code == 0
    attach = (
        f"import sys, sysv_ipc; s = sysv_ipc.attach({segment_id(sysv_key)}); "
        "print(1, flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", attach], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout.readline() == b"1\n"
        record = run("shm", "inspect", sysv_key, "--json").json()
        assert holder.pid in record["users"] and record["attached"] == 1
        assert_one_line_error(run("shm", "clean", sysv_key), "shm", 6)
        stale = run("shm", "clean", "--stale", "--older-than", "0", "--dry-run", "--json").json()
        mine = next(e for e in stale if e["target"] == record["target"])
        assert mine["action"] == "skipped"
    finally:
        holder.kill()
        holder.wait()
    stale = run("shm", "clean", "--stale", "--older-than", "0", "--dry-run", "--json").json()
    assert next(e for e in stale if e["target"] == record["target"])["action"] == "would remove"


def test_posix_inspect_names_mappers_and_limits(posix_name: str) -> None:
    receiver = start_receiver("shm", "recv", posix_name, "--stream", "--size", "8192")
    try:
        wait_until_blocked(receiver.process.pid)
        record = run("shm", "inspect", posix_name, "--json").json()
        assert receiver.process.pid in record["mappers"]
        assert receiver.process.pid in record["users"]
        assert_one_line_error(run("shm", "clean", posix_name), "shm", 6)
    finally:
        receiver.process.kill()
        receiver.process.wait()
    limits = run("shm", "inspect", "--limits", "--json").json()
    assert {"shmmax", "shmall_pages", "shmmni"} <= set(limits["sysv"])
    assert {"size", "used"} <= set(limits["posix"])


def test_semaphores_are_not_listed() -> None:
    import posix_ipc

    sem_name = unique_name()
    sem = posix_ipc.Semaphore(sem_name, posix_ipc.O_CREX)
    try:
        targets = [r["target"] for r in run("shm", "inspect", "--json").json()]
        assert not any(t.endswith(sem_name[1:]) for t in targets)
    finally:
        sem.unlink()


# --- bad input -----------------------------------------------------------------------


def test_too_large_for_an_existing_segment_writes_nothing(sysv_key: str) -> None:
    assert run("shm", "send", sysv_key, "--size", "32", "--data", "keep me").code == 0
    assert_one_line_error(run("shm", "send", sysv_key, input=b"x" * 17), "shm", 7)
    assert run("shm", "recv", sysv_key).stdout == b"keep me"
    assert_one_line_error(run("shm", "send", sysv_key, "--offset", "10", input=b"x" * 7), "shm", 7)
    assert_one_line_error(
        run("shm", "send", hex(unique_key()), "--size", "8", "--data", "x"), "shm", 7
    )


@pytest.mark.parametrize(
    "args",
    [
        ("send", "--offset", "-1", "--data", "x"),
        ("recv", "--offset", "-5"),
        ("send", "--size", "0", "--data", "x"),
        ("recv", "--offset", "999"),
        ("send", "--offset", "999", "--data", "x"),
        ("recv", "--length", "999"),
    ],
)
def test_usage_errors(sysv_key: str, args: tuple[str, ...]) -> None:
    assert run("shm", "send", sysv_key, "--size", "64", "--data", "x").code == 0
    verb, *rest = args
    assert_one_line_error(run("shm", verb, sysv_key, *rest), "shm", 2)
    assert run("shm", "recv", sysv_key).stdout == b"x"


def test_unknown_key_and_bad_names(sysv_key: str) -> None:
    assert_one_line_error(run("shm", "recv", sysv_key), "shm", 3)
    assert_one_line_error(run("shm", "recv", "/no-such-segment-here"), "shm", 3)
    assert_one_line_error(run("shm", "send", "/two/slashes", "--data", "x"), "shm", 2)
    assert_one_line_error(run("shm", "clean", sysv_key), "shm", 3)


def test_permission_denied_for_nobody(sysv_key: str, posix_name: str) -> None:
    for target in (sysv_key, posix_name):
        assert run("shm", "send", target, "--data", "secret").code == 0
        assert_one_line_error(run_as_nobody("shm", "recv", target), "shm", 4)
        assert_one_line_error(run_as_nobody("shm", "send", target, "--data", "x"), "shm", 4)
        assert_one_line_error(run_as_nobody("shm", "clean", target, "--force"), "shm", 4)
        assert run("shm", "recv", target).stdout == b"secret"


# --- stream ----------------------------------------------------------------------------


def streamer(verb: str, target: str, *args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(command("shm", verb, target, "--stream", *args), **popen)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=5000))
def test_any_bytes_through_a_small_ring(data: bytes) -> None:
    target = hex(unique_key())
    try:  # 300 bytes: a 44-byte ring, so 5000 bytes go round it 100 times
        receiver = start_receiver(
            "shm", "recv", target, "--stream", "--size", "300", stdout=subprocess.PIPE
        ).process
        sent = run("shm", "send", target, "--stream", input=data)
        out, _ = receiver.communicate(timeout=30)
        assert sent.code == 0, sent.err
        assert (receiver.returncode, out) == (0, data)
    finally:
        remove_sysv(target)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("shm") / "data"
    with open(source, "wb") as f:
        for _ in range(256):
            f.write(os.urandom(1 << 20))
    return source


@pytest.mark.slow
@pytest.mark.parametrize("first", ["receiver", "sender"])
def test_256_mib_sha256_identical(
    first: str, big_file: Path, tmp_path: Path, sysv_key: str
) -> None:
    received = tmp_path / "received"
    with open(big_file, "rb") as data, open(received, "wb") as out:
        if first == "receiver":
            receiver = start_receiver("shm", "recv", sysv_key, "--stream", stdout=out).process
            sender = streamer("send", sysv_key, stdin=data, stderr=subprocess.PIPE)
        else:
            sender = streamer("send", sysv_key, stdin=data, stderr=subprocess.PIPE)
            wait_until_blocked(sender.pid)  # the ring is full: it waits for a receiver
            receiver = streamer("recv", sysv_key, stdout=out, stderr=subprocess.PIPE)
        assert sender.wait(timeout=120) == 0, sender.stderr.read() if sender.stderr else ""
        receiver.communicate(timeout=120)
    assert receiver.returncode == 0
    assert sha256(received) == sha256(big_file)
    assert ipcs_row(sysv_key) is None, "the ring was left behind"


def test_c_ring_peer_both_ways(compile_peer, sysv_key: str, tmp_path: Path) -> None:
    ring = compile_peer("shm_ring.c")
    data = os.urandom(300_000)
    with open(tmp_path / "from_c", "wb") as out:  # a file: a full pipe would stall it
        receiver = start_receiver(
            "shm", "recv", sysv_key, "--stream", "--size", "4096", stdout=out
        ).process
        subprocess.run([ring, "send", sysv_key, "4096"], input=data, check=True, timeout=30)
        assert receiver.wait(timeout=30) == 0
    assert (tmp_path / "from_c").read_bytes() == data
    with open(tmp_path / "out", "wb") as out:  # a file: a pipe nobody reads yet would stall it
        c_receiver = subprocess.Popen([ring, "recv", sysv_key, "4096"], stdout=out)
        sent = run("shm", "send", sysv_key, "--stream", "--size", "4096", input=data)
        assert sent.code == 0, sent.err
        assert c_receiver.wait(timeout=30) == 0
    assert (tmp_path / "out").read_bytes() == data
    assert ipcs_row(sysv_key) is None


def test_killed_sender_ends_the_receiver(sysv_key: str) -> None:
    receiver = start_receiver(
        "shm", "recv", sysv_key, "--stream", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ).process
    sender = streamer("send", sysv_key, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    sender.stdin.write(b"part of a stream")
    sender.stdin.flush()
    wait_until_blocked(sender.pid)  # in read(), stdin empty
    sender.kill()
    sender.wait()
    out, err = receiver.communicate(timeout=30)
    assert receiver.returncode == 1, err
    assert b"sender" in err and b"gone" in err and b"Traceback" not in err
    assert out == b"part of a stream"
    assert ipcs_row(sysv_key) is None


def test_killed_receiver_ends_the_sender(sysv_key: str) -> None:
    receiver = start_receiver(
        "shm", "recv", sysv_key, "--stream", "--size", "4096", stdout=subprocess.PIPE
    ).process
    wait_until_blocked(receiver.pid)
    receiver.kill()
    receiver.wait()
    sent = run("shm", "send", sysv_key, "--stream", input=os.urandom(100_000))
    assert_one_line_error(sent, "shm", 1)
    assert "receiver" in sent.err and "gone" in sent.err
    assert ipcs_row(sysv_key) is None


@pytest.mark.parametrize("side", ["receiver", "sender"])
def test_ctrl_c_either_side_is_130(side: str, sysv_key: str) -> None:
    if side == "receiver":
        proc = start_receiver("shm", "recv", sysv_key, "--stream", stderr=subprocess.PIPE).process
    else:  # more than the ring holds, and no receiver: it waits for room
        proc = streamer(
            "send", sysv_key, "--size", "4096", stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        proc.stdin.write(os.urandom(8192))
        proc.stdin.close()
    wait_until_blocked(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert proc.stderr.read() == b""
    assert ipcs_row(sysv_key) is None


def test_timeout_is_124_and_removes_the_ring(sysv_key: str) -> None:
    got = run("shm", "recv", sysv_key, "--stream", "--timeout", "0.3")
    assert_one_line_error(got, "shm", 124)
    assert ipcs_row(sysv_key) is None


def test_second_receiver_refused_and_blackboard_is_no_ring(sysv_key: str, posix_name: str) -> None:
    receiver = start_receiver("shm", "recv", sysv_key, "--stream", stdout=subprocess.PIPE).process
    try:
        wait_until_blocked(receiver.pid)
        assert_one_line_error(run("shm", "recv", sysv_key, "--stream", "--timeout", "5"), "shm", 6)
        assert receiver.poll() is None, "the refused receiver disturbed the stream"
    finally:
        receiver.kill()
        receiver.wait()
    assert run("shm", "send", posix_name, "--size", "4096", "--data", "board").code == 0
    assert_one_line_error(run("shm", "recv", posix_name, "--stream", "--timeout", "1"), "shm", 2)
    assert run("shm", "recv", posix_name).stdout == b"board"


def test_stream_refuses_blackboard_options(sysv_key: str) -> None:
    assert_one_line_error(run("shm", "send", sysv_key, "--stream", "--offset", "4"), "shm", 2)
    assert_one_line_error(run("shm", "recv", sysv_key, "--stream", "--hex"), "shm", 2)
    assert ipcs_row(sysv_key) is None


def test_inspect_json_is_valid(sysv_key: str) -> None:
    assert run("shm", "send", sysv_key, "--data", "x").code == 0
    records = run("shm", "inspect", "--json").json()
    assert any(r["target"] == f"0x{int(sysv_key, 16):08x}" for r in records)
    json.dumps(records)


def test_sender_first_ends_before_the_receiver_comes(posix_name: str) -> None:
    sent = run("shm", "send", posix_name, "--stream", input=b"left in the ring\0")
    assert sent.code == 0, sent.err  # as a pipe's writer: done once the bytes are in
    assert exists(posix_name)
    got = run("shm", "recv", posix_name, "--stream", "--timeout", "10")
    assert (got.code, got.stdout) == (0, b"left in the ring\0")
    assert not exists(posix_name), "the receiver leaves no ring behind"


def test_keep_and_id(sysv_key: str) -> None:
    receiver = start_receiver(
        "shm", "recv", sysv_key, "--stream", "--keep", stdout=subprocess.PIPE
    ).process
    assert run("shm", "send", sysv_key, "--stream", "--keep", input=b"kept").code == 0
    assert receiver.communicate(timeout=30)[0] == b"kept"
    assert ipcs_row(sysv_key) is not None, "--keep removed the ring"
    assert_one_line_error(run("shm", "recv", sysv_key, "--stream", "--timeout", "5"), "shm", 6)
    assert run("shm", "clean", sysv_key).code == 0
    assert run("shm", "send", sysv_key, "--data", "by id").code == 0
    assert run("shm", "recv", "--id", str(segment_id(sysv_key))).stdout == b"by id"


def test_a_segment_ipcmk_made_carries_a_stream_and_stays() -> None:
    made = subprocess.run(["ipcmk", "-M", "8192"], capture_output=True, text=True, check=True)
    shmid = made.stdout.split()[-1]
    try:
        key = next(
            f"0x{int(row['key']) & 0xFFFFFFFF:08x}"
            for row in read_rows("/proc/sysvipc/shm")
            if row["shmid"] == shmid
        )
        receiver = start_receiver("shm", "recv", key, "--stream", stdout=subprocess.PIPE).process
        data = os.urandom(50_000)
        assert run("shm", "send", key, "--stream", input=data).code == 0
        assert receiver.communicate(timeout=30)[0] == data
        assert ipcs_row(key) is not None, "a segment ipcmk made was removed"
    finally:
        subprocess.run(["ipcrm", "-m", shmid], capture_output=True, check=False)


def read_rows(path: str) -> list[dict[str, str]]:
    with open(path) as f:
        header = f.readline().split()
        return [dict(zip(header, line.split(), strict=False)) for line in f]


def test_receiver_piped_into_head_is_quiet_and_stops_the_sender(sysv_key: str) -> None:
    shell = (
        f"{' '.join(command('shm', 'recv', sysv_key, '--stream', '--size', '4096'))} | head -c 10"
    )
    reader = subprocess.Popen(["bash", "-c", shell], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # more than the receiver's stdout pipe holds (grown to 1 MiB): it must hit head's exit
    sent = run("shm", "send", sysv_key, "--stream", "--size", "4096", input=os.urandom(8 << 20))
    out, err = reader.communicate(timeout=30)
    assert (len(out), err) == (10, b"")  # our own stdout closing is quiet (141, unseen here)
    assert_one_line_error(sent, "shm", 1)
    assert "receiver" in sent.err and "stopped" in sent.err
    assert ipcs_row(sysv_key) is None


def test_readable_by_others_with_mode_0644(sysv_key: str, posix_name: str) -> None:
    for target in (sysv_key, posix_name):
        assert run("shm", "send", target, "--mode", "0644", "--data", "for all").code == 0
        got = run_as_nobody("shm", "recv", target)
        assert (got.code, got.stdout) == (0, b"for all"), got.err  # attached read-only
        assert_one_line_error(run_as_nobody("shm", "send", target, "--data", "x"), "shm", 4)


@pytest.mark.parametrize("sending", [True, False], ids=["sender", "receiver"])
def test_a_role_claimed_but_not_yet_marked_running_is_refused(
    tmp_path: Path, sending: bool
) -> None:
    """Two sides started at once: one has taken the role (its claim word holds its
    pid) but not yet stored its state. A plain look at the state would let the
    second in too; the claim's compare-and-swap must refuse it."""
    import mmap

    from ipctool.api import Refused
    from ipctool_plugins.shm.ring import Header, Ring

    other = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    path = tmp_path / "ring"
    path.write_bytes(bytes(4096))
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 4096) as mapping:
        view = memoryview(mapping)
        address = ctypes.addressof(ctypes.c_char.from_buffer(mapping))
        ring = Ring(view, address, "test", created=False)
        try:
            claim = Header.sender_claim if sending else Header.receiver_claim
            ctypes.c_uint32.from_address(address + claim.offset).value = other.pid
            with pytest.raises(Refused, match=f"pid {other.pid}, running"):
                ring.claim(sending)
        finally:
            ring.release()
            view.release()
            other.communicate()


def test_of_two_senders_started_at_once_one_is_refused(sysv_key: str) -> None:
    """Two real senders on one ring, each round started together: exactly one
    gets the ring, and the receiver gets exactly its bytes."""
    for round_ in range(8):
        payloads = [os.urandom(1000) + bytes([i]) for i in range(2)]
        argv = command("shm", "send", sysv_key, "--stream")
        pipes = {"stdin": subprocess.PIPE, "stderr": subprocess.PIPE}
        senders = [subprocess.Popen(argv, **pipes) for _ in payloads]
        for sender, payload in zip(senders, payloads, strict=True):
            assert sender.stdin is not None
            sender.stdin.write(payload)
            sender.stdin.close()
        codes = [sender.wait(timeout=60) for sender in senders]
        for sender in senders:
            assert sender.stderr is not None
            sender.stderr.close()
        assert sorted(codes) == [0, 6], f"round {round_}: {codes}"
        received = run("shm", "recv", sysv_key, "--stream")
        assert received.stdout == payloads[codes.index(0)], f"round {round_}"
