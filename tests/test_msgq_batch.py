"""msgq's C accelerator (plugins/msgq/_batch.c) called directly, on real queues.

The suite needs it built (the editable install builds it with gcc): these tests
fail, rather than skip, where it is missing."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from itertools import groupby

import pytest
import sysv_ipc
from conftest import NOBODY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipctool.testkit import unique_key
from ipctool_plugins.msgq import _batch
from ipctool_plugins.msgq.sysv import msgmax

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
