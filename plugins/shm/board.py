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

TRAILER_SIZE = 16
MAGIC = int.from_bytes(b"ipctool\x01", "little")
_TRAILER = struct.Struct("<QQ")


def data_end(view: memoryview) -> int | None:
    """Where ipctool's trailer says the data ends, or None without a valid trailer."""
    size = len(view)
    if size < TRAILER_SIZE:
        return None
    end, check = _TRAILER.unpack_from(view, size - TRAILER_SIZE)
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


STREAM_HEADER = 256  # what check_no_stream reads: a ring's header


def check_no_stream(label: str, view: memoryview) -> None:
    """A ring in use (a stream's sender or receiver is running) is no blackboard:
    writing over its header would corrupt the stream under both of them."""
    from ipctool_plugins.shm.ring import running_sides

    if sides := running_sides(view):
        from ipctool.api import Refused

        raise Refused(label, f"carries a running stream ({', '.join(sides)}); not written")


def write(view: memoryview, offset: int, data: bytes, cstring: bool) -> None:
    """Write data at offset and mark its end (the caller checked that it fits)."""
    end = offset + len(data)
    if cstring:
        void_trailer(view)
        view[offset:end] = data
        view[end] = 0
        return
    view[offset:end] = data
    write_trailer(view, end)


def content(view: memoryview, offset: int, length: int | None) -> memoryview:
    """What recv prints: `length` bytes, else to the trailer's end, else to the first NUL."""
    if length is not None:
        return view[offset : offset + length]
    end = data_end(view)
    if end is not None:
        return view[offset : max(offset, end)]
    nul = bytes(view[offset:]).find(b"\0")  # one copy: memoryview has no find()
    return view[offset:] if nul < 0 else view[offset : offset + nul]


def hex_dump(data: bytes, start: int = 0) -> Iterator[str]:
    """Lines as `hexdump -C` writes them: offset, 16 bytes in hex, the printable ones."""
    for at in range(0, len(data), 16):
        row = data[at : at + 16]
        left = " ".join(f"{b:02x}" for b in row[:8])
        right = " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        yield f"{start + at:08x}  {left:<23}  {right:<23}  |{text}|"
    yield f"{start + len(data):08x}"


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
    view: memoryview,
    offset: int,
    length: int | None,
    as_hex: bool,
    ready_fd: int | None,
    noun: str,
) -> None:
    """recv's blackboard output: the data from `offset` (see content()), raw or
    as a hex dump, once the range is checked and readiness announced."""
    from ipctool.api import UsageError, announce_ready

    size = len(view)
    check_offset(label, offset, size, noun)
    if length is not None and offset + length > size:
        raise UsageError(
            label, f"{length} bytes at offset {offset} run past the {noun}'s end ({size} bytes)"
        )
    announce_ready(label, ready_fd)
    data = content(view, offset, length)
    if as_hex:
        text = "\n".join(hex_dump(bytes(data), offset)) + "\n"
        write_out(memoryview(text.encode()))
    else:
        write_out(data)
    data.release()


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
