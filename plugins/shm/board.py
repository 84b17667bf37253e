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
