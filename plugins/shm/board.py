"""Blackboard mode's layout: data at an offset, and ipctool's record of where it ends.

Nothing here knows SysV or POSIX: it works on any writable memoryview of a
mapping, so the mmap plugin uses it for a file as it is.

The data is where a C program expects it: at its offset (0 by default), as
plain bytes. What C programs do not write is where it ends. ipctool writes a
trailer in the segment's last TRAILER_SIZE bytes:

    size - 16: u64 end    (little-endian: the offset where the data stops)
    size -  8: u64 check  (end XOR MAGIC)

The trailer is valid when check == end ^ MAGIC and end <= size - 16; random
bytes pass that one time in 2**64. recv prints from the offset to `end` when
the trailer is valid (exact bytes, trailing NULs included), else up to the
first NUL (a C string, as the lecture's writer leaves it), or to the end of
the segment if it has no NUL. send --cstring writes the data and a NUL and no
trailer (and voids ipctool's old trailer), for C readers that use %s.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Protocol

TRAILER_SIZE = 16
READ_CHUNK = 1 << 20  # recv reads and prints this much at a time (a multiple of 16)
MAGIC = int.from_bytes(b"ipctool\x01", "little")
_TRAILER = struct.Struct("<QQ")


class Readable(Protocol):
    """What recv reads a board from: a memoryview of the mapping, or a FileReader."""

    def __len__(self) -> int: ...

    def __getitem__(self, part: slice, /) -> bytes | memoryview: ...


class FileReader:
    """A file's bytes by pread, sliced like a memoryview: holes read as zeros
    without taking a page (reading a hole of a tmpfs mapping takes one, and on a
    full tmpfs that is SIGBUS), and nothing is read that is not asked for."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd, self.size = fd, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, part: slice, /) -> bytes:
        start, stop, _ = part.indices(self.size)
        return os.pread(self.fd, max(0, stop - start), start)


def data_end(view: Readable) -> int | None:
    """Where ipctool's trailer says the data ends, or None without a valid trailer."""
    size = len(view)
    if size < TRAILER_SIZE:
        return None
    end, check = _TRAILER.unpack(view[size - TRAILER_SIZE : size])
    if check != end ^ MAGIC or end > size - TRAILER_SIZE:
        return None
    return int(end)


def write_trailer(view: memoryview, end: int) -> None:
    _TRAILER.pack_into(view, len(view) - TRAILER_SIZE, end, end ^ MAGIC)


def void_trailer(view: memoryview) -> None:
    """Make an old trailer of ipctool's invalid; bytes that are no trailer stay as they are."""
    if data_end(view) is not None:
        _TRAILER.pack_into(view, len(view) - TRAILER_SIZE, 0, 0)


def needed_size(offset: int, length: int, cstring: bool) -> int:
    """The smallest segment that holds `length` bytes at `offset` and their end mark."""
    return offset + length + (1 if cstring else TRAILER_SIZE)


def room(size: int, offset: int, cstring: bool) -> int:
    """How many bytes fit at `offset` in a segment of `size` bytes."""
    return max(0, size - offset - (1 if cstring else TRAILER_SIZE))


def spans_written(size: int, offset: int, length: int, cstring: bool) -> list[tuple[int, int]]:
    """(start, length) of what write() changes in a segment of `size` bytes."""
    if cstring:
        return [(offset, length + 1)]
    return [(offset, length), (size - TRAILER_SIZE, TRAILER_SIZE)]


def spans_touched(size: int, offset: int, length: int, cstring: bool) -> list[tuple[int, int]]:
    """(start, length) of all a blackboard send reaches through the mapping: what
    write() changes, the ring header check_no_stream reads and the trailer that
    write() reads to void an old end mark (with --cstring it writes none there).
    On tmpfs even reading a hole through a mapping takes a page (SIGBUS when it
    is full), so the sender reserves all of them first."""
    spans = spans_written(size, offset, length, cstring)
    spans.append((0, min(size, STREAM_HEADER)))
    if cstring and size >= TRAILER_SIZE:
        spans.append((size - TRAILER_SIZE, TRAILER_SIZE))
    return spans


def pieces_written(
    size: int, offset: int, data: bytes, cstring: bool
) -> list[tuple[int, memoryview]]:
    """What write() leaves in a new, all-zero segment of `size` bytes, as (start,
    bytes) to pwrite: the data, then its end mark (a NUL, or the trailer), placed
    where spans_written says. The rest stays zeros, so no image of the whole
    segment is ever built in memory."""
    mark = memoryview(bytearray(1 if cstring else TRAILER_SIZE))
    if not cstring:
        write_trailer(mark, offset + len(data))
    chunks = [chunk for chunk in (memoryview(data), mark) if chunk]
    pieces = []
    for start, length in spans_written(size, offset, len(data), cstring):
        while length:  # a span may take the end of one chunk and the start of the next
            piece = chunks[0][:length]
            pieces.append((start, piece))
            start, length = start + len(piece), length - len(piece)
            chunks[0] = chunks[0][len(piece) :]
            if not chunks[0]:
                chunks.pop(0)
    return pieces


STREAM_HEADER = 256  # what check_no_stream reads: a ring's header


def check_no_stream(label: str, view: memoryview) -> None:
    """A ring in use (a stream's sender or receiver is running) is no blackboard:
    writing over its header would corrupt the stream under both of them."""
    from ipctool_plugins.shm.ring import running_sides

    if sides := running_sides(view):
        from ipctool.api import Refused

        raise Refused(label, f"carries a running stream ({', '.join(sides)}); not written")


def write(view: memoryview, offset: int, data: bytes, cstring: bool) -> None:
    """Write data at offset and mark its end (the caller checked that it fits).

    With signals held: a Ctrl-C halfway through a large copy would leave new bytes
    under the old end mark, which recv would print as data nobody sent. The old
    mark is voided first, so that even SIGKILL mid-copy leaves no mark vouching
    for the mix."""
    from ipctool.api import interrupts_deferred

    end = offset + len(data)
    with interrupts_deferred():
        void_trailer(view)
        view[offset:end] = data
        if cstring:
            view[end] = 0
        else:
            write_trailer(view, end)


def content_range(view: Readable, offset: int, length: int | None) -> tuple[int, int]:
    """What recv prints, as (start, stop): `length` bytes, else to the trailer's
    end, else to the first NUL."""
    if length is not None:
        return offset, offset + length
    end = data_end(view)
    if end is not None:
        return offset, max(offset, end)
    return offset, find_nul(view, offset)


def find_nul(view: Readable, start: int) -> int:
    """The first NUL at or after start (or the end), looked for a chunk at a time:
    a large segment holding a short C string is not copied whole."""
    size = len(view)
    for at in range(start, size, READ_CHUNK):
        found = bytes(view[at : min(size, at + READ_CHUNK)]).find(b"\0")  # no find() on views
        if found >= 0:
            return at + found
    return size


def hex_rows(data: bytes, start: int) -> Iterator[str]:
    """Lines as `hexdump -C` writes them: offset, 16 bytes in hex, the printable ones."""
    for at in range(0, len(data), 16):
        row = data[at : at + 16]
        left = " ".join(f"{b:02x}" for b in row[:8])
        right = " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        yield f"{start + at:08x}  {left:<23}  {right:<23}  |{text}|"


# --- what the shm and mmap verbs share around the layout ------------------------


def read_input(data: str | None, limit: int | None = None) -> bytes:
    """--data, or stdin through the core's reader (a directory as stdin is an
    error). With a limit, reading stops once more than `limit` bytes came: an
    endless stdin into an existing object is refused, not held in memory."""
    if data is not None:
        return os.fsencode(data)  # bytes as typed, even non-UTF-8
    from ipctool.streams import read_all

    return read_all(limit=limit)


def check_offset(label: str, offset: int, size: int, noun: str) -> None:
    """An offset past the end of the segment or file (`noun`) is a usage error."""
    from ipctool.api import UsageError

    if offset > size:
        raise UsageError(label, f"offset {offset} is past the {noun}'s end ({size} bytes)")


def too_large(
    label: str, length: int, offset: int, size: int, cstring: bool, noun: str, note: str = ""
) -> BaseException:
    """The exit-7 error for data that does not fit; `note` adds the object's rule."""
    from ipctool.api import TooLarge

    fits = room(size, offset, cstring)
    mark = "a NUL" if cstring else f"the {TRAILER_SIZE}-byte end trailer"
    return TooLarge(
        label,
        f"{length} bytes at offset {offset} do not fit a {size}-byte {noun} "
        f"({fits} fit there with {mark}); nothing written{note}",
    )


def print_content(
    label: str,
    view: Readable,
    offset: int,
    length: int | None,
    as_hex: bool,
    ready_fd: int | None,
    noun: str,
) -> None:
    """recv's blackboard output: the data from `offset` (see content_range), raw or
    as a hex dump, once the range is checked and readiness announced."""
    from ipctool.api import UsageError, announce_ready

    size = len(view)
    check_offset(label, offset, size, noun)
    if length is not None and offset + length > size:
        raise UsageError(
            label, f"{length} bytes at offset {offset} run past the {noun}'s end ({size} bytes)"
        )
    announce_ready(label, ready_fd)
    start, stop = content_range(view, offset, length)
    # A chunk at a time (a multiple of 16: hex rows stay whole), so that neither
    # the data nor its dump is ever held whole.
    for at in range(start, stop, READ_CHUNK):
        part = view[at : min(stop, at + READ_CHUNK)]
        if as_hex:
            text = "".join(row + "\n" for row in hex_rows(bytes(part), at))
            write_out(memoryview(text.encode()))
        else:
            write_out(memoryview(part))
    if as_hex:
        write_out(memoryview(f"{stop:08x}\n".encode()))


def write_out(view: memoryview) -> None:
    """All of it to stdout; our reader gone is the quiet 141."""
    from ipctool.api import StdoutClosed, from_os_error

    while view:
        try:
            view = view[os.write(1, view) :]
        except BrokenPipeError:
            raise StdoutClosed from None
        except OSError as err:
            raise from_os_error("stdout", err) from None
