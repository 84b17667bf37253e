"""msgq's C accelerator (plugins/msgq/_batch.c) called directly, on real queues.

The suite needs it built (the editable install builds it with gcc): these tests
fail, rather than skip, where it is missing."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from itertools import groupby
from pathlib import Path
from typing import TypeVar

import pytest
import sysv_ipc
from conftest import NOBODY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipctool.stream_protocol import ABORT, CONTROL_SIZE, END, MAGIC, control
from ipctool.testkit import unique_key
from ipctool_plugins.msgq import _batch
from ipctool_plugins.msgq.sysv import msgmax

T = TypeVar("T")
REMOVED = {errno.EIDRM, errno.EINVAL}  # EINVAL: the id names no queue any more


@contextlib.contextmanager
def new_queue(mode: int = 0o600) -> Iterator[sysv_ipc.MessageQueue]:
    queue = sysv_ipc.MessageQueue(unique_key(), sysv_ipc.IPC_CREX, mode, max_message_size=msgmax())
    try:
        yield queue
    finally:
        with contextlib.suppress(sysv_ipc.ExistentialError):
            queue.remove()


@pytest.fixture
def queue() -> Iterator[sysv_ipc.MessageQueue]:
    with new_queue() as made:
        yield made


def receive_all(queue: sysv_ipc.MessageQueue) -> list[tuple[bytes, int]]:
    got = []
    with contextlib.suppress(sysv_ipc.BusyError):
        while True:
            got.append(queue.receive(False))
    return got


def test_send_many_sends_in_order_with_its_type(queue: sysv_ipc.MessageQueue) -> None:
    messages = [b"one", b"", b"\0three\xff", b"x" * msgmax()]
    assert _batch.send_many(queue.id, messages, 7) == (4, 0)
    assert receive_all(queue) == [(m, 7) for m in messages]
    assert _batch.send_many(queue.id, [], 7) == (0, 0)


def test_receive_many_keeps_order_and_types(queue: sysv_ipc.MessageQueue) -> None:
    sent = [(b"a", 3), (b"b", 1), (b"c", 2), (b"d", 1_000_000), (b"e", 2**31 - 1)]
    for data, mtype in sent:
        queue.send(data, False, mtype)  # sysv_ipc's types are C ints
    sent.append((b"f", 2**63 - 1))
    assert _batch.send_many(queue.id, [b"f"], 2**63 - 1) == (1, 0)  # msgrcv's are longs
    assert _batch.receive_many(queue.id, 2, 0, msgmax()) == (sent[:2], 0)  # most: 2
    assert _batch.receive_many(queue.id, 10, 2, msgmax()) == ([sent[2]], errno.ENOMSG)
    assert _batch.receive_many(queue.id, 10, 0, msgmax()) == (sent[3:], errno.ENOMSG)
    assert _batch.receive_many(queue.id, 0, 0, msgmax()) == ([], 0)


def test_receive_many_selects_as_msgrcv_does(queue: sysv_ipc.MessageQueue) -> None:
    for data, mtype in ((b"5", 5), (b"3", 3), (b"7", 7), (b"3b", 3)):
        queue.send(data, False, mtype)
    lowest = _batch.receive_many(queue.id, 10, -6, msgmax())  # lowest type <= 6 first
    assert lowest == ([(b"3", 3), (b"3b", 3), (b"5", 5)], errno.ENOMSG)
    assert _batch.receive_many(queue.id, 10, 7, msgmax()) == ([(b"7", 7)], errno.ENOMSG)


def test_a_full_queue_stops_a_batch(queue: sysv_ipc.MessageQueue) -> None:
    queue.max_size = 100  # msg_qbytes: room for ten 10-byte messages
    messages = [b"%010d" % i for i in range(25)]
    assert _batch.send_many(queue.id, messages, 1) == (10, errno.EAGAIN)
    assert _batch.receive_many(queue.id, 100, 0, msgmax()) == (
        [(m, 1) for m in messages[:10]],
        errno.ENOMSG,
    )
    assert _batch.send_many(queue.id, messages[10:], 1) == (10, errno.EAGAIN)


def test_an_empty_queue_is_enomsg(queue: sysv_ipc.MessageQueue) -> None:
    assert _batch.receive_many(queue.id, 5, 0, msgmax()) == ([], errno.ENOMSG)


def test_a_message_over_the_buffer_stays_in_the_queue(queue: sysv_ipc.MessageQueue) -> None:
    for data in (b"small", b"b" * 100, b"after"):
        queue.send(data, False, 1)
    assert _batch.receive_many(queue.id, 10, 0, 99) == ([(b"small", 1)], errno.E2BIG)
    assert _batch.receive_many(queue.id, 10, 0, 99) == ([], errno.E2BIG)  # still first
    got = _batch.receive_many(queue.id, 10, 0, 100)
    assert got == ([(b"b" * 100, 1), (b"after", 1)], errno.ENOMSG)


def test_a_removed_queue_is_eidrm_or_einval(queue: sysv_ipc.MessageQueue) -> None:
    queue.send(b"left", False, 1)
    queue.remove()
    sent, error = _batch.send_many(queue.id, [b"x"], 1)
    assert sent == 0 and error in REMOVED
    messages, error = _batch.receive_many(queue.id, 5, 0, msgmax())
    assert messages == [] and error in REMOVED


NOBODY_CALLS = """
import sys
from ipctool_plugins.msgq import _batch
queue_id = int(sys.argv[1])
print(_batch.send_many(queue_id, [b"x"], 1), _batch.receive_many(queue_id, 5, 0, 100))
"""


def test_another_users_queue_is_eacces(queue: sysv_ipc.MessageQueue) -> None:
    queue.send(b"mine", False, 1)
    done = subprocess.run(
        [*NOBODY, sys.executable, "-c", NOBODY_CALLS, str(queue.id)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"(0, {errno.EACCES}) ([], {errno.EACCES})\n"
    assert receive_all(queue) == [(b"mine", 1)]


def test_what_is_not_bytes_sends_nothing(queue: sysv_ipc.MessageQueue) -> None:
    with pytest.raises(TypeError, match="message 1 is str"):
        _batch.send_many(queue.id, [b"a", "b"], 1)
    with pytest.raises(TypeError):
        _batch.send_many(queue.id, (b"a",), 1)  # a list, not any sequence
    with pytest.raises(ValueError):
        _batch.receive_many(queue.id, -1, 0, 100)
    assert receive_all(queue) == []


def test_references_are_counted_exactly(queue: sysv_ipc.MessageQueue) -> None:
    """Each object received is held by what contains it and nothing else: compared
    with objects made here and held the same way (counts differ across Pythons)."""
    _batch.send_many(queue.id, [b"x" * 20] * 3, 1000)
    result = _batch.receive_many(queue.id, 10, 0, 100)
    fresh_result = tuple([[], 0])
    assert sys.getrefcount(result) == sys.getrefcount(fresh_result)
    got = result[0]
    del result
    fresh_list = list(got)
    assert sys.getrefcount(got) == sys.getrefcount(fresh_list)
    pair = got[0]
    kind, body = pair[1], pair[0]
    del got, fresh_list  # the other two pairs go; the type is shared by all three
    fresh_pair, fresh_kind, fresh_body = tuple([1, 2]), int("1000"), bytes(bytearray(20))
    assert sys.getrefcount(pair) == sys.getrefcount(fresh_pair)
    assert sys.getrefcount(kind) == sys.getrefcount(fresh_kind) + 1  # and the pair
    assert sys.getrefcount(body) == sys.getrefcount(fresh_body) + 1


def test_batches_leak_nothing(queue: sysv_ipc.MessageQueue) -> None:
    """Every object made is freed once its caller drops it (a reference counted
    once too often would keep it): memory stays flat over many round trips,
    stops (full, empty, too large) included."""
    queue.max_size = 1000
    messages = [b"m" * 40] * 30  # more than the queue holds: the batch stops

    def rounds(count: int) -> None:
        for i in range(count):
            _batch.send_many(queue.id, messages, 300 + i % 3)
            _batch.receive_many(queue.id, 5, 0, 10)  # E2BIG: nothing taken
            _batch.receive_many(queue.id, 100, 0, 100)  # taken, types above 256

    rounds(100)  # caches and free lists filled first
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rounds(1000)  # 25,000 messages: a leak of one object each is > 500 KB
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 50_000, f"{grown} bytes more after 1000 rounds"


message_lists = st.lists(
    st.tuples(
        st.binary(max_size=64) | st.binary(min_size=msgmax() - 64, max_size=msgmax()),
        st.sampled_from([1, 2, 256, 257]) | st.integers(min_value=1, max_value=2**63 - 1),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=message_lists)
def test_any_messages_round_trip_exactly(messages: list[tuple[bytes, int]]) -> None:
    """Sent in runs of one type (send_many has one type a call), received with
    every type selected: the same messages, types and order come out. A batch
    stopped by a full queue (it holds two of the largest) goes on once the
    queue has been emptied."""
    received: list[tuple[bytes, int]] = []
    with new_queue() as queue:
        for mtype, run in groupby(messages, key=lambda m: m[1]):
            pending = [data for data, _ in run]
            while pending:
                sent, error = _batch.send_many(queue.id, pending, mtype)
                pending = pending[sent:]
                assert error == (errno.EAGAIN if pending else 0)
                if pending:
                    got, error = _batch.receive_many(queue.id, 100, 0, msgmax())
                    assert got and error == errno.ENOMSG
                    received += got
        got, error = _batch.receive_many(queue.id, len(messages) + 1, 0, msgmax())
        assert error == errno.ENOMSG
    assert received + got == messages


@pytest.mark.parametrize(("env", "native"), [({}, True), ({"IPCTOOL_NO_NATIVE": "1"}, False)])
def test_the_plugin_uses_it_unless_told_not_to(env: dict[str, str], native: bool) -> None:
    check = "from ipctool_plugins.msgq import sysv; print(sysv._batch is not None)"
    environment = {k: v for k, v in os.environ.items() if k != "IPCTOOL_NO_NATIVE"}
    done = subprocess.run(
        [sys.executable, "-c", check],
        env={**environment, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == f"{native}\n"


# --- a stream's loops: send_pieces and receive_pieces --------------------------

STREAM_TYPE = 1 << 30  # a stream's channel
ALL = 1 << 30  # pieces a call may move: more than any test sends


def pieces_in(path, size: int) -> list[bytes]:
    data = path.read_bytes()
    return [data[at : at + size] for at in range(0, len(data), size)]


def send_all(queue_id: int, fd: int, size: int) -> tuple[int, list[bytes]]:
    """send_pieces until the end of fd: bytes sent, and the pieces it gave back."""
    sent, back = 0, []
    while True:
        count, eof, error, rest = _batch.send_pieces(
            queue_id, STREAM_TYPE, fd, size, ALL, MAGIC, CONTROL_SIZE
        )
        sent += count
        assert error == 0, os.strerror(error)
        if rest is not None:
            back.append(rest)
        if eof:
            return sent, back


def receive_in_thread(queue_id: int, fd: int) -> list[tuple]:
    """receive_pieces, blocking, in a thread (it releases the GIL while it waits)."""
    results: list[tuple] = []

    def take() -> None:
        results.append(
            _batch.receive_pieces(
                queue_id, STREAM_TYPE, msgmax(), fd, True, ALL, MAGIC, CONTROL_SIZE
            )
        )

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    results.append(thread)
    return results


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=60_000), size=st.integers(CONTROL_SIZE + 1, 8192))
def test_pieces_round_trip_exactly(data: bytes, size: int) -> None:
    """A file read in pieces of `size`, through a queue that holds two of them
    (both loops block by turns), written whole, then the control message that
    ends it comes back untouched."""
    with new_queue() as queue, tempfile.TemporaryDirectory() as tmp:
        source, copy = Path(tmp) / "in", Path(tmp) / "out"
        source.write_bytes(data)
        with open(source, "rb") as inp, open(copy, "wb") as out:
            taking = receive_in_thread(queue.id, out.fileno())
            sent, back = send_all(queue.id, inp.fileno(), size)
            end = control(END, 1, sent)
            queue.send(end, True, STREAM_TYPE)
            taking[0].join(timeout=60)
        written, pieces, error, write_error, message = taking[1]
        expected = pieces_in(source, size)
        if back:  # a last piece that looks like a control message (not sent)
            assert back == expected[-1:] and expected[-1].startswith(MAGIC)
            expected.pop()
        assert (written, pieces, error, write_error, message) == (
            sent,
            len(expected),
            0,
            0,
            end,
        )
        assert copy.read_bytes() == b"".join(expected)


def test_a_piece_like_a_control_message_comes_back(queue: sysv_ipc.MessageQueue, tmp_path) -> None:
    lookalike = control(END, 0, 0)
    source = tmp_path / "in"
    source.write_bytes(b"x" * 100 + lookalike)
    with open(source, "rb") as inp:
        fd = inp.fileno()
        assert _batch.send_pieces(queue.id, 7, fd, 100, ALL, MAGIC, CONTROL_SIZE) == (
            100,
            False,
            0,
            lookalike,
        )
        assert _batch.send_pieces(queue.id, 7, fd, 100, ALL, MAGIC, CONTROL_SIZE) == (
            0,
            True,
            0,
            None,
        )
    assert receive_all(queue) == [(b"x" * 100, 7)]


def test_receive_pieces_stops_at_a_control_message(queue: sysv_ipc.MessageQueue) -> None:
    abort = control(ABORT, 3, 5)
    for data in (b"first", MAGIC + b"!", abort, b"after"):  # MAGIC alone is data
        queue.send(data, False, STREAM_TYPE)
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        got = _batch.receive_pieces(
            queue.id, STREAM_TYPE, msgmax(), writer.fileno(), False, 5, MAGIC, CONTROL_SIZE
        )
        assert got == (22, 2, 0, 0, abort)
        assert reader.read(22) == b"first" + MAGIC + b"!"
    assert receive_all(queue) == [(b"after", STREAM_TYPE)]  # left in the queue


def test_receive_pieces_stops_after_most_and_when_empty(queue: sysv_ipc.MessageQueue) -> None:
    for data in (b"a", b"b", b"c"):
        queue.send(data, False, STREAM_TYPE)
    with open(os.devnull, "wb") as null:
        fd = null.fileno()
        take = _batch.receive_pieces
        assert take(queue.id, STREAM_TYPE, 10, fd, False, 2, MAGIC, CONTROL_SIZE) == (
            2,
            2,
            0,
            0,
            None,
        )
        assert take(queue.id, STREAM_TYPE, 10, fd, False, 5, MAGIC, CONTROL_SIZE) == (
            1,
            1,
            errno.ENOMSG,
            0,
            None,
        )


@pytest.mark.parametrize("into", ["/dev/full", "closed pipe"])
def test_a_failed_write_says_its_errno(queue: sysv_ipc.MessageQueue, into: str) -> None:
    queue.send(b"piece", False, STREAM_TYPE)
    queue.send(b"next", False, STREAM_TYPE)
    if into == "/dev/full":
        out, want = open(into, "wb"), errno.ENOSPC  # noqa: SIM115 - closed below
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)
        out, want = os.fdopen(write_end, "wb"), errno.EPIPE  # SIGPIPE: ignored by Python
    with out:
        got = _batch.receive_pieces(
            queue.id, STREAM_TYPE, msgmax(), out.fileno(), True, ALL, MAGIC, CONTROL_SIZE
        )
    assert got == (0, 0, 0, want, None)
    assert receive_all(queue) == [(b"next", STREAM_TYPE)]  # only the piece it took is gone


def interrupted_by_alarm(call: Callable[[], T]) -> T:
    """call() while an alarm interrupts it once it waits (it waits forever else)."""
    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_signal_ends_their_waits(queue: sysv_ipc.MessageQueue, tmp_path) -> None:
    take = _batch.receive_pieces
    with open(os.devnull, "wb") as null:  # an empty queue: msgrcv waits
        got = interrupted_by_alarm(
            lambda: take(queue.id, STREAM_TYPE, 10, null.fileno(), True, ALL, MAGIC, CONTROL_SIZE)
        )
    assert got == (0, 0, errno.EINTR, 0, None)
    queue.max_size = 100  # a full queue: msgsnd waits
    queue.send(b"f" * 100, False, 1)
    source = tmp_path / "in"
    source.write_bytes(b"p" * 60)
    with open(source, "rb") as inp:
        got = interrupted_by_alarm(
            lambda: _batch.send_pieces(
                queue.id, STREAM_TYPE, inp.fileno(), 60, ALL, MAGIC, CONTROL_SIZE
            )
        )
    assert got == (0, False, errno.EINTR, b"p" * 60)  # the piece comes back, not lost
    assert receive_all(queue) == [(b"f" * 100, 1)]
