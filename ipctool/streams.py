"""Exact-bytes stdin and stdout, and the framings every message mechanism shares.

Framings (send splits stdin, recv joins messages back):
  whole   all of stdin is one message; recv writes each message as it is
  lines   one message per line, without its newline; recv adds a newline
  null    one message per NUL-terminated record (find -print0); recv adds a NUL
  stream  stdin of any size as maximum-size messages and an empty end marker;
          recv writes the pieces back to back and stops at the marker
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from enum import Enum
from typing import Any

from ipctool.errors import UsageError, from_os_error

READ_CHUNK = 1 << 16
STDIN, STDOUT = 0, 1


class Framing(str, Enum):
    WHOLE = "whole"
    LINES = "lines"
    NULL = "null"
    STREAM = "stream"

    @property
    def separator(self) -> bytes:
        return {Framing.LINES: b"\n", Framing.NULL: b"\0"}.get(self, b"")


def framing_from_flags(lines: bool = False, null: bool = False, stream: bool = False) -> Framing:
    chosen = [
        f
        for f, on in ((Framing.LINES, lines), (Framing.NULL, null), (Framing.STREAM, stream))
        if on
    ]
    if len(chosen) > 1:
        raise UsageError(None, "choose one of --lines, --null and --stream")
    return chosen[0] if chosen else Framing.WHOLE


def _read(fd: int, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except OSError as err:  # e.g. stdin closed (<&-): name it in the error line
        raise from_os_error("stdin", err) from None


def read_all(fd: int = STDIN, limit: int | None = None) -> bytes:
    """All of stdin, exactly (for the whole framing).

    With a limit, reading stops once more than `limit` bytes came: the caller
    refuses an oversized message without holding (or waiting for) the rest.
    """
    parts, size = [], 0
    while chunk := _read(fd, READ_CHUNK):
        parts.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            break
    return b"".join(parts)


def iter_record_batches(
    separator: bytes, fd: int = STDIN, limit: int | None = None
) -> Iterator[list[bytes]]:
    """Records of stdin without their separator, a batch per read, as soon as each
    is complete (a batch per read keeps the per-record cost to a list step).

    A last record with no separator comes too; an empty stdin gives none. An
    unfinished record is kept as the pieces it came in, and each read is searched
    once, so a long record costs linear time; once it passes `limit`, Oversized
    is raised without reading the rest (stdin may never end: /dev/zero).
    """
    tail: list[bytes] = []  # the unfinished record
    tail_size = 0
    yielded = False
    while chunk := _read(fd, READ_CHUNK):
        records = chunk.split(separator)
        if len(records) == 1:  # no separator: the unfinished record grows
            tail.append(chunk)
            tail_size += len(chunk)
            if limit is not None and tail_size > limit:
                raise Oversized(tail_size, cut=True, first=not yielded)
            continue
        if tail:
            tail.append(records[0])
            records[0] = b"".join(tail)
        last = records.pop()
        tail, tail_size = ([last], len(last)) if last else ([], 0)
        yielded = True
        yield records
    if tail:
        yield [b"".join(tail)]


def iter_chunks(size: int, fd: int = STDIN) -> Iterator[bytes]:
    """stdin in pieces of at most `size` bytes, none of them empty (for stream)."""
    while chunk := _read(fd, size):
        yield chunk


class Oversized(Exception):
    """A message or record over the limit: what send must refuse.

    cut: reading stopped once it passed the limit (size is a lower bound).
    first: nothing was read before it, so nothing has been sent.
    """

    def __init__(self, size: int, *, cut: bool = False, first: bool = True) -> None:
        super().__init__(size)
        self.size, self.cut, self.first = size, cut, first


def stdin_batches(
    framing: Framing, data: bytes | None, max_size: int, fd: int = STDIN
) -> Iterator[list[bytes]]:
    """What send transmits, in batches of messages. `data` (--data) replaces stdin.

    A message or record over max_size raises Oversized once the ones before it
    have been yielded. The whole framing reads at most max_size + 1 bytes.
    """
    if framing is Framing.WHOLE:
        whole = read_all(fd, limit=max_size) if data is None else data
        if len(whole) > max_size:
            raise Oversized(len(whole), cut=data is None)
        yield [whole]
    elif framing is Framing.STREAM:
        if data is None:
            yield from ([chunk] for chunk in iter_chunks(max_size, fd))
        else:
            yield [data[i : i + max_size] for i in range(0, len(data), max_size)]
    else:
        yield from _checked(_record_batches(framing, data, max_size, fd), max_size)


def _record_batches(
    framing: Framing, data: bytes | None, max_size: int, fd: int
) -> Iterator[list[bytes]]:
    if data is None:
        yield from iter_record_batches(framing.separator, fd, limit=max_size)
        return
    records = data.split(framing.separator)
    if records[-1] == b"":
        records.pop()
    yield records


def _checked(batches: Iterator[list[bytes]], max_size: int) -> Iterator[list[bytes]]:
    """The batches up to the first record over max_size, then Oversized for it."""
    first = True
    for batch in batches:
        if batch and max(map(len, batch)) > max_size:  # one pass in C, per batch
            cut = next(i for i, record in enumerate(batch) if len(record) > max_size)
            if cut:
                yield batch[:cut]
            raise Oversized(len(batch[cut]), first=first and not cut)
        first = first and not batch
        yield batch


def stdin_records(framing: Framing, data: bytes | None, max_size: int) -> Iterator[bytes]:
    """What send transmits, one message at a time (see stdin_batches)."""
    for batch in stdin_batches(framing, data, max_size):
        yield from batch


class RecordWriter:
    """Writes received messages to stdout in a framing, through one reused buffer.

    Call `flush()` before waiting for the next message, so a reader sees each
    message at once while bursts still leave in large writes.
    """

    def __init__(self, framing: Framing, cstring: bool = False, fd: int = STDOUT) -> None:
        try:
            raw = io.FileIO(fd, "wb", closefd=False)
        except OSError as err:  # stdout closed (>&-)
            raise _stdout_error(err) from None
        self.out = io.BufferedWriter(raw, buffer_size=1 << 16)
        self.terminator = framing.separator
        self.cstring = cstring

    def cut(self, message: bytes) -> bytes:
        """The message as --cstring shows it: up to its first NUL."""
        return message.split(b"\0", 1)[0] if self.cstring else message

    def write_many(self, messages: list[tuple[bytes, Any]], _meta_key: Any = None) -> None:
        """Several (data, meta) messages in one write, each framed as write() frames it."""
        bodies = [self.cut(m[0]) for m in messages] if self.cstring else [m[0] for m in messages]
        if self.terminator:
            bodies.append(b"")  # join puts a terminator after every body
        self.write_raw(self.terminator.join(bodies))

    def write_json_many(self, messages: list[tuple[bytes, Any]], meta_key: str | None) -> None:
        from ipctool.output import data_fields, json_line

        key = meta_key or "meta"
        self.write_raw(
            b"".join(json_line({key: m[1], **data_fields(self.cut(m[0]))}) for m in messages)
        )

    def write_raw(self, data: bytes) -> None:
        try:
            self.out.write(data)
        except OSError as err:
            raise _stdout_error(err) from None

    def flush(self) -> None:
        try:
            self.out.flush()
        except OSError as err:
            raise _stdout_error(err) from None


def _stdout_error(err: OSError) -> BaseException:
    """A closed pipe stays BrokenPipeError (a quiet exit); others name stdout."""
    return err if isinstance(err, BrokenPipeError) else from_os_error("stdout", err)
