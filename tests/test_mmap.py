"""mmap against real files: the lecture's C programs both ways, a mapping process, bad
paths (links, directories, devices, FIFOs), another user, and streams through a file."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NOBODY, run_as_nobody
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipctool.testing import (
    assert_one_line_error,
    command,
    run,
    start_receiver,
    wait_until_blocked,
)
from ipctool.testkit import unique_path
from ipctool_plugins.mmap.testing import remove_file

TRAILER = 16


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def place() -> Iterator[str]:
    """A directory of its own in /tmp (a unique path, so others can reach it)."""
    path = unique_path(".dir")
    os.mkdir(path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# --- blackboard --------------------------------------------------------------------


def test_exact_bytes_new_file_sized_and_0600(ipctool_path: str) -> None:
    data = b"\x00binary\xff\x00\n\x00\x00"
    assert run("mmap", "send", ipctool_path, input=data).code == 0
    st_ = os.stat(ipctool_path)
    assert (st_.st_mode & 0o777, st_.st_size) == (0o600, len(data) + TRAILER)
    got = run("mmap", "recv", ipctool_path)
    assert (got.code, got.stdout) == (0, data)
    assert run("mmap", "send", ipctool_path, "--data", "hi", "--sync").code == 0
    assert run("mmap", "recv", ipctool_path).stdout == b"hi"  # the end moves with the write


def test_mode_offset_size_length_and_hex(ipctool_path: str) -> None:
    sent = run("mmap", "send", ipctool_path, "--size", "256", "--mode", "0640", "--data", "head")
    assert sent.code == 0, sent.err
    assert os.stat(ipctool_path).st_mode & 0o777 == 0o640
    assert run("mmap", "send", ipctool_path, "--offset", "100", "--data", "tail").code == 0
    assert run("mmap", "recv", ipctool_path, "--offset", "100").stdout == b"tail"
    assert run("mmap", "recv", ipctool_path, "--length", "4").stdout == b"head"
    dump = run("mmap", "recv", ipctool_path, "--offset", "100", "--hex").stdout.decode()
    assert dump == "00000064  74 61 69 6c                                       |tail|\n00000068\n"
    assert os.path.getsize(ipctool_path) == 256  # never resized


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=3000))
def test_any_bytes_through_the_file(data: bytes) -> None:
    path = unique_path(".mmap")
    try:
        assert run("mmap", "send", path, input=data).code == 0
        assert run("mmap", "recv", path).stdout == data
    finally:
        remove_file(path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=300),
    offset=st.integers(0, 300),
    spare=st.integers(0, 300),
    cstring=st.booleans(),
)
def test_a_new_file_holds_exactly_what_write_leaves(
    data: bytes, offset: int, spare: int, cstring: bool
) -> None:
    """A new file gets only its data and end mark written (never an image of all of
    it): its bytes are what the layout's write() leaves in zeros of its size."""
    from ipctool_plugins.shm import board

    size = board.needed_size(offset, len(data), cstring) + spare
    image = bytearray(size)
    board.write(memoryview(image), offset, data, cstring)
    path = unique_path(".mmap")
    args = ["--size", str(size), "--offset", str(offset), *(["--cstring"] if cstring else [])]
    try:
        assert run("mmap", "send", path, *args, input=data).code == 0
        with open(path, "rb") as f:
            assert f.read() == image
    finally:
        remove_file(path)


def test_too_large_for_an_existing_file_writes_nothing(ipctool_path: str) -> None:
    assert run("mmap", "send", ipctool_path, "--size", "32", "--data", "keep me").code == 0
    before = sha256(ipctool_path)
    assert_one_line_error(run("mmap", "send", ipctool_path, input=b"x" * 17), "mmap", 7)
    assert_one_line_error(
        run("mmap", "send", ipctool_path, "--offset", "10", input=b"x" * 7), "mmap", 7
    )
    assert sha256(ipctool_path) == before and os.path.getsize(ipctool_path) == 32
    # a file that is not ipctool's: never grown either
    with open(ipctool_path, "wb") as f:
        f.write(b"someone else's\0" + bytes(100))
    before = sha256(ipctool_path)
    assert_one_line_error(run("mmap", "send", ipctool_path, input=b"y" * 200), "mmap", 7)
    assert sha256(ipctool_path) == before
    missing = unique_path(".mmap")
    assert_one_line_error(run("mmap", "send", missing, "--size", "8", "--data", "x"), "mmap", 7)
    assert not os.path.exists(missing)


@pytest.mark.parametrize(
    "args",
    [
        ("send", "--offset", "-1", "--data", "x"),
        ("recv", "--offset", "-5"),
        ("send", "--size", "0", "--data", "x"),
        ("recv", "--offset", "999"),
        ("send", "--offset", "999", "--data", "x"),
        ("recv", "--length", "999"),
        ("send", "--size", "128", "--data", "x"),  # --size is for new files
    ],
)
def test_usage_errors_leave_the_file(ipctool_path: str, args: tuple[str, ...]) -> None:
    assert run("mmap", "send", ipctool_path, "--size", "64", "--data", "x").code == 0
    before = sha256(ipctool_path)
    verb, *rest = args
    assert_one_line_error(run("mmap", verb, ipctool_path, *rest), "mmap", 2)
    assert sha256(ipctool_path) == before


def test_missing_file_and_directory(ipctool_path: str) -> None:
    assert_one_line_error(run("mmap", "recv", ipctool_path), "mmap", 3)
    assert_one_line_error(run("mmap", "send", ipctool_path + "/no/dir", "--data", "x"), "mmap", 3)
    assert_one_line_error(run("mmap", "clean", ipctool_path), "mmap", 3)


# --- paths that are not regular files --------------------------------------------------


def test_symlink_refused_and_target_untouched(ipctool_path: str, place: str) -> None:
    assert run("mmap", "send", ipctool_path, "--data", "the target").code == 0
    before = sha256(ipctool_path)
    link = os.path.join(place, "link")
    os.symlink(ipctool_path, link)
    for args in (("send", link, "--data", "x"), ("recv", link), ("send", link, "--stream")):
        assert_one_line_error(run("mmap", *args), "mmap", 2)
    assert sha256(ipctool_path) == before and os.path.islink(link)
    dangling = os.path.join(place, "dangling")
    os.symlink(os.path.join(place, "made-through-link"), dangling)
    assert_one_line_error(run("mmap", "send", dangling, "--data", "x"), "mmap", 2)
    assert not os.path.exists(os.path.join(place, "made-through-link"))


@pytest.mark.parametrize("kind", ["directory", "fifo", "socket", "device"])
def test_other_types_refused_untouched(kind: str, place: str) -> None:
    import socket

    path = "/dev/null" if kind == "device" else os.path.join(place, kind)
    listener = None
    if kind == "directory":
        os.mkdir(path)
    elif kind == "fifo":
        os.mkfifo(path)  # opening it to write would wait for a reader: never opened
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
    try:
        before = os.lstat(path)
        for args in (("send", "--data", "x"), ("recv",), ("recv", "--stream", "--timeout", "5")):
            got = run("mmap", args[0], path, *args[1:])
            assert_one_line_error(got, "mmap", 2)
            assert "not a regular file" in got.err
        after = os.lstat(path)
        assert (after.st_ino, after.st_mode, after.st_size) == (
            before.st_ino,
            before.st_mode,
            before.st_size,
        )
    finally:
        if listener is not None:
            listener.close()


def test_link_in_a_shared_sticky_directory(place: str) -> None:
    """A parent that is another user's link in a sticky, world-writable directory is
    not followed (as fs.protected_symlinks); our own link there is."""
    os.chmod(place, 0o1777)
    real = os.path.join(place, "real")
    os.mkdir(real)
    theirs, ours = os.path.join(place, "theirs"), os.path.join(place, "ours")
    subprocess.run([*NOBODY, "ln", "-s", real, theirs], check=True)
    os.symlink(real, ours)
    got = run("mmap", "send", os.path.join(theirs, "f"), "--data", "x")
    assert_one_line_error(got, "mmap", 2)
    assert "symbolic link" in got.err and os.listdir(real) == []
    assert run("mmap", "send", os.path.join(ours, "f"), "--data", "x").code == 0
    assert os.listdir(real) == ["f"]


def test_no_link_in_a_world_writable_directory_without_sticky_bit(place: str) -> None:
    """Anyone can replace any entry of such a directory: not even our own link there
    is followed."""
    os.chmod(place, 0o777)
    real = os.path.join(place, "real")
    os.mkdir(real)
    ours = os.path.join(place, "ours")
    os.symlink(real, ours)
    got = run("mmap", "send", os.path.join(ours, "f"), "--data", "x")
    assert_one_line_error(got, "mmap", 2)
    assert "symbolic link" in got.err and os.listdir(real) == []


@pytest.mark.parametrize("shared_mode", [0o1777, 0o777], ids=["sticky", "not-sticky"])
def test_a_link_inside_a_links_target_is_held_to_the_rules(place: str, shared_mode: int) -> None:
    """Our own link, in our own directory, whose target goes through another user's
    link in a shared directory: that link is checked too, as every link on the way."""
    shared, real = os.path.join(place, "shared"), os.path.join(place, "real")
    os.mkdir(shared)
    os.chmod(shared, shared_mode)
    os.mkdir(real)
    subprocess.run([*NOBODY, "ln", "-s", real, os.path.join(shared, "theirs")], check=True)
    ours = os.path.join(place, "ours")
    os.symlink(os.path.join(shared, "theirs"), ours)
    got = run("mmap", "send", os.path.join(ours, "f"), "--data", "x")
    assert_one_line_error(got, "mmap", 2)
    assert "symbolic link" in got.err and os.listdir(real) == []


def test_permission_denied_for_nobody(ipctool_path: str) -> None:
    assert run("mmap", "send", ipctool_path, "--data", "secret").code == 0
    before = sha256(ipctool_path)
    assert_one_line_error(run_as_nobody("mmap", "recv", ipctool_path), "mmap", 4)
    assert_one_line_error(run_as_nobody("mmap", "send", ipctool_path, "--data", "x"), "mmap", 4)
    assert_one_line_error(run_as_nobody("mmap", "clean", ipctool_path, "--force"), "mmap", 4)
    assert sha256(ipctool_path) == before


# --- the lecture's C programs -----------------------------------------------------------


def test_lecture_writer_to_ipctool(compile_peer, ipctool_path: str) -> None:
    writer = compile_peer("mmap_writer.c", IPCTOOL_TEST_PATH=f'"{ipctool_path}"')
    subprocess.run([writer], check=True, timeout=10)
    got = run("mmap", "recv", ipctool_path)
    assert (got.code, got.stdout) == (0, b"Hello, world")  # not 8192 bytes of padding
    assert run("mmap", "recv", ipctool_path, "--length", "13").stdout == b"Hello, world\0"
    # ipctool writes into the C program's file without resizing it
    assert run("mmap", "send", ipctool_path, "--data", "Hi").code == 0
    assert os.path.getsize(ipctool_path) == 8192
    assert run("mmap", "recv", ipctool_path).stdout == b"Hi"


def test_ipctool_to_lecture_reader(compile_peer, ipctool_path: str) -> None:
    reader = compile_peer("mmap_reader.c", IPCTOOL_TEST_PATH=f'"{ipctool_path}"')
    sent = run("mmap", "send", ipctool_path, "--cstring", "--data", "Hello, world")
    assert sent.code == 0, sent.err
    out = subprocess.run([reader], capture_output=True, check=True, timeout=10).stdout
    assert out == b"data is: Hello, world!\n"
    assert not os.path.exists(ipctool_path)  # the reader deletes it


# --- inspect and clean ------------------------------------------------------------------

MAPPER = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED)
os.close(fd)
print("mapped", flush=True)
sys.stdin.read()
"""


def test_inspect_names_a_mapper_and_clean_refuses(ipctool_path: str) -> None:
    assert run("mmap", "send", ipctool_path, "--data", "mapped").code == 0
    mapper = subprocess.Popen(
        [sys.executable, "-c", MAPPER, ipctool_path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert mapper.stdout is not None and mapper.stdout.readline() == b"mapped\n"
        record = run("mmap", "inspect", ipctool_path, "--json").json()
        assert mapper.pid in record["users"], record
        assert [m["pid"] for m in record["mappers"]] == [mapper.pid]
        assert record["mark"] == "blackboard" and record["mode"] == "0600"
        listed = run("mmap", "inspect", "--json").json()  # mapped shared and writable
        assert any(r["target"] == ipctool_path for r in listed)
        refused = run("mmap", "clean", ipctool_path)
        assert_one_line_error(refused, "mmap", 6)
        assert str(mapper.pid) in refused.err and os.path.exists(ipctool_path)
    finally:
        mapper.kill()
        mapper.wait()
    assert run("mmap", "clean", ipctool_path).code == 0
    assert not os.path.exists(ipctool_path)


def test_clean_stale_only_in_a_named_directory(place: str) -> None:
    ours, theirs = os.path.join(place, "ours"), os.path.join(place, "plain")
    assert run("mmap", "send", ours, "--data", "x").code == 0
    with open(theirs, "wb") as f:
        f.write(b"an ordinary file")
    nowhere = run("mmap", "clean", "--stale", "--older-than", "0s", "--json")
    assert (nowhere.code, nowhere.json()) == (0, [])
    assert "directory you name" in nowhere.err
    fresh = run("mmap", "clean", "--stale", place, "--dry-run", "--json").json()
    assert all(e["action"] != "would remove" for e in fresh)
    dry = run("mmap", "clean", "--stale", place, "--older-than", "0s", "--dry-run", "--json")
    actions = {e["target"]: e["action"] for e in dry.json()}
    assert actions == {ours: "would remove", theirs: "skipped"}
    assert os.path.exists(ours)
    done = run("mmap", "clean", "--stale", place, "--older-than", "0s", "--json")
    assert {e["target"]: e["action"] for e in done.json()} == {ours: "removed", theirs: "skipped"}
    assert os.listdir(place) == ["plain"]


# --- stream ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=5000))
def test_any_bytes_through_a_small_ring(data: bytes) -> None:
    path = unique_path(".mmap")
    try:  # 300 bytes: a 44-byte ring, so 5000 bytes go round it 100 times
        receiver = start_receiver(
            "mmap", "recv", path, "--stream", "--size", "300", stdout=subprocess.PIPE
        ).process
        sent = run("mmap", "send", path, "--stream", input=data)
        out, _ = receiver.communicate(timeout=30)
        assert sent.code == 0, sent.err
        assert (receiver.returncode, out) == (0, data)
        assert not os.path.exists(path)  # the receiver removes the file it made
    finally:
        remove_file(path)


def test_ctrl_c_in_a_waiting_stream_recv(ipctool_path: str) -> None:
    proc = start_receiver("mmap", "recv", ipctool_path, "--stream", stderr=subprocess.PIPE).process
    wait_until_blocked(proc.pid)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert proc.stderr is not None and proc.stderr.read() == b""
    assert not os.path.exists(ipctool_path)


def test_killed_sender_ends_the_receiver(ipctool_path: str) -> None:
    receiver = start_receiver(
        "mmap", "recv", ipctool_path, "--stream", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ).process
    sender = subprocess.Popen(
        command("mmap", "send", ipctool_path, "--stream"), stdin=subprocess.PIPE
    )
    assert sender.stdin is not None
    sender.stdin.write(b"part of a stream")
    sender.stdin.flush()
    wait_until_blocked(sender.pid)  # in read(), stdin empty
    sender.kill()
    sender.wait()
    out, err = receiver.communicate(timeout=30)
    assert receiver.returncode == 1, err
    assert b"sender" in err and b"gone" in err and b"Traceback" not in err
    assert out == b"part of a stream"
    assert not os.path.exists(ipctool_path)


def test_stream_timeout_and_blackboard_is_no_ring(ipctool_path: str) -> None:
    assert_one_line_error(
        run("mmap", "recv", ipctool_path, "--stream", "--timeout", "0.3"), "mmap", 124
    )
    assert not os.path.exists(ipctool_path)
    assert run("mmap", "send", ipctool_path, "--size", "4096", "--data", "board").code == 0
    assert_one_line_error(run("mmap", "recv", ipctool_path, "--stream"), "mmap", 2)
    assert run("mmap", "recv", ipctool_path).stdout == b"board"  # left as it was


def test_killed_receiver_ends_the_sender(ipctool_path: str) -> None:
    receiver = start_receiver(
        "mmap", "recv", ipctool_path, "--stream", "--size", "4096", stdout=subprocess.PIPE
    ).process
    wait_until_blocked(receiver.pid)
    receiver.kill()
    receiver.wait()
    sent = run("mmap", "send", ipctool_path, "--stream", input=os.urandom(100_000))
    assert_one_line_error(sent, "mmap", 1)
    assert "receiver" in sent.err and "gone" in sent.err
    assert not os.path.exists(ipctool_path)


def test_ctrl_c_in_a_sender_waiting_for_room(ipctool_path: str) -> None:
    sender = subprocess.Popen(
        command("mmap", "send", ipctool_path, "--stream", "--size", "4096"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert sender.stdin is not None and sender.stderr is not None
    sender.stdin.write(os.urandom(8192))  # more than the ring holds, and no receiver
    sender.stdin.close()
    wait_until_blocked(sender.pid)
    sender.send_signal(signal.SIGINT)
    assert sender.wait(timeout=30) == 130
    assert sender.stderr.read() == b""
    assert not os.path.exists(ipctool_path)


def test_dot_dot_after_a_shared_link_is_no_way_round(place: str) -> None:
    """`theirs/../f` goes up from the link's target, as the kernel walks it: refused."""
    os.chmod(place, 0o1777)
    real = os.path.join(place, "a", "b")
    os.makedirs(real)
    theirs = os.path.join(place, "theirs")
    subprocess.run([*NOBODY, "ln", "-s", real, theirs], check=True)
    got = run("mmap", "send", os.path.join(theirs, "..", "f"), "--data", "x")
    assert_one_line_error(got, "mmap", 2)
    assert os.listdir(os.path.join(place, "a")) == ["b"] and not os.path.exists(
        os.path.join(place, "f")
    )


def test_mmap_verbs_load_no_sysv_or_posix_code(tmp_path, ipctool_path: str) -> None:
    """The layouts are shm's, but neither shm's kernel module nor its libraries load."""
    from test_plugins import imported_modules

    never = {"sysv_ipc", "posix_ipc", "rich", "ipctool_plugins.shm.segments"}
    sent = imported_modules(tmp_path, "mmap", "send", ipctool_path, input=b"x")
    assert "ipctool_plugins.shm.board" in sent and not sent & never
    assert not imported_modules(tmp_path, "mmap", "recv", ipctool_path) & never
    os.unlink(ipctool_path)
    receiver = start_receiver(
        "mmap", "recv", ipctool_path, "--stream", "--size", "4096", stdout=subprocess.PIPE
    ).process
    try:
        streamed = imported_modules(tmp_path, "mmap", "send", ipctool_path, "--stream", input=b"y")
        assert "ipctool_plugins.shm.ring" in streamed and not streamed & never
        out, _ = receiver.communicate(timeout=30)
        assert out == b"y"
    finally:
        receiver.kill()
        receiver.wait()


def test_c_file_ring_peer_both_ways(compile_peer, tmp_path: Path) -> None:
    """tests/peers/shm_ring.c over a file (a PATH instead of a KEY) speaks the same
    ring as mmap --stream: each side of either kind, and the ring removed after."""
    ring = compile_peer("shm_ring.c")
    path = str(tmp_path / "ring")
    data = os.urandom(300_000)  # 73 wraps of the 4096-byte file's ring
    with open(tmp_path / "from_c", "wb") as out:  # a file: a full pipe would stall it
        receiver = start_receiver(
            "mmap", "recv", path, "--stream", "--size", "4096", stdout=out
        ).process
        subprocess.run([ring, "send", path, "4096"], input=data, check=True, timeout=30)
        assert receiver.wait(timeout=30) == 0
    assert (tmp_path / "from_c").read_bytes() == data
    assert not os.path.lexists(path)
    with open(tmp_path / "out", "wb") as out:
        c_receiver = subprocess.Popen([ring, "recv", path, "4096"], stdout=out)
        sent = run("mmap", "send", path, "--stream", "--size", "4096", input=data)
        assert sent.code == 0, sent.err
        assert c_receiver.wait(timeout=30) == 0
    assert (tmp_path / "out").read_bytes() == data
    assert not os.path.lexists(path)
