"""Properties of framing and buffers: in-process over real pipes, and end to end
through real queues (fewer examples: each one runs ipctool twice)."""

from __future__ import annotations

import contextlib
import itertools
import os
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipctool.streams import (
    Framing,
    Oversized,
    iter_pieces,
    iter_record_batches,
    stdin_batches,
    stdin_records,
)
from ipctool.testing import run

lines_strategy = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30)


def feed(chunks: list[bytes]) -> int:
    """A real pipe whose writer sends these chunks as separate writes."""
    read_end, write_end = os.pipe()

    def writer() -> None:
        try:
            for chunk in chunks:
                os.write(write_end, chunk)
        except BrokenPipeError:
            pass  # the reader stopped early (a record over the limit)
        finally:
            os.close(write_end)

    threading.Thread(target=writer, daemon=True).start()
    return read_end


@given(lines=lines_strategy, cuts=st.lists(st.integers(min_value=0, max_value=2000)))
def test_records_survive_any_chunking(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\n" for line in lines)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    fd = feed([data[a:b] for a, b in itertools.pairwise(points) if b > a])
    try:
        assert [r for batch in iter_record_batches(b"\n", fd) for r in batch] == lines
    finally:
        os.close(fd)


@given(
    records=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\0", b"")), max_size=30),
    cuts=st.lists(st.integers(min_value=0, max_value=9000)),
    limit=st.integers(min_value=1, max_value=200),
)
def test_records_with_a_limit_stop_at_the_first_one_over_it(
    records: list[bytes], cuts: list[int], limit: int
) -> None:
    """With a limit, the records before the first long one come out whole and in
    order, then Oversized; never a part of a record, never one twice."""
    data = b"".join(r + b"\0" for r in records)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    fd = feed([data[a:b] for a, b in itertools.pairwise(points) if b > a])
    got: list[bytes] = []
    try:
        with contextlib.suppress(Oversized):
            for batch in stdin_batches(Framing.NULL, None, limit, fd=fd):
                got.extend(batch)
    finally:
        os.close(fd)
    first_long = next((i for i, r in enumerate(records) if len(r) > limit), len(records))
    assert got == records[:first_long]


@given(
    writes=st.lists(st.binary(min_size=1, max_size=3000), max_size=6),
    size=st.integers(min_value=1, max_value=9000),
)
def test_pieces_are_nonempty_bounded_and_complete(writes: list[bytes], size: int) -> None:
    fd = feed(writes)  # writes of any size: reads take what the pipe holds
    try:
        pieces = [bytes(p) for batch in iter_pieces(size, fd) for p in batch]
    finally:
        os.close(fd)
    assert b"".join(pieces) == b"".join(writes)
    assert all(0 < len(p) <= size for p in pieces)


@given(data=st.binary(max_size=3000), size=st.integers(min_value=1, max_value=500))
def test_data_option_stream_split(data: bytes, size: int) -> None:
    pieces = list(stdin_records(Framing.STREAM, data, size))
    assert b"".join(pieces) == data and all(0 < len(p) <= size for p in pieces)


E2E = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@E2E
@given(data=st.binary(max_size=12000))
def test_any_bytes_through_stream_mode(sysv_key: str, data: bytes) -> None:
    # Up to 12000 bytes fits in one 16 KiB SysV queue, so send may finish before recv.
    assert run("msgq", "send", sysv_key, "--stream", input=data).code == 0
    got = run("msgq", "recv", sysv_key, "--stream", "--nowait")
    assert (got.code, got.stdout) == (0, data)


@E2E
@given(lines=st.lists(st.text(max_size=30).map(lambda t: t.replace("\n", "")), max_size=8))
def test_any_lines_through_line_mode(posix_name: str, lines: list[str]) -> None:
    data = "".join(line + "\n" for line in lines).encode()
    assert run("msgq", "send", posix_name, "--lines", input=data).code == 0
    got = run("msgq", "recv", posix_name, "--lines", "--follow", "--nowait")
    assert (got.code, got.stdout) == (0, data)
