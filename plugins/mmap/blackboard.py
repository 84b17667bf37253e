"""Blackboard mode over a file: shm's layout (board.py), the file's own rules.

An existing file keeps its size: data that does not fit is exit 7 before a byte
is written, and the blocks the write reaches are reserved first. A new one
appears whole, data and trailer already in it: sized on disk, and only they
written (never an image of the whole file in memory).
"""

from __future__ import annotations

import os

from ipctool.api import NotFound, PermissionDenied, UsageError, from_os_error
from ipctool_plugins.mmap import files
from ipctool_plugins.shm import board

FILE = "file"  # the noun in board's error lines
NEVER_RESIZED = ", the file is never resized"


def room_for(path: str, offset: int, cstring: bool) -> int | None:
    """How much fits at `offset` in the file at the path, or None if there is none
    (a new one is made to fit): stdin is read no further than that."""
    try:
        size = files.lstat_regular(path).st_size
    except (NotFound, PermissionDenied):
        return None  # write_board says so, after the read
    return board.room(size, offset, cstring)


def write_board(
    path: str, payload: bytes, offset: int, size: int | None, cstring: bool, mode: int, sync: bool
) -> None:
    with files.Place(path) as place:
        try:
            fd = place.open(writable=True)
        except NotFound:
            made = write_new(place, payload, offset, size, cstring, mode, sync)
            if made:
                return
            fd = place.open(writable=True)  # another process made it first
        mapped = files.MappedFile(place, fd, writable=True)
        try:
            write_existing(mapped, payload, offset, size, cstring, sync)
        finally:
            mapped.close()


def write_new(
    place: files.Place,
    payload: bytes,
    offset: int,
    size: int | None,
    cstring: bool,
    mode: int,
    sync: bool,
) -> bool:
    """Make the file with the data in it; False if another process made one first.
    Sized on disk, and only the data and its end mark written into it."""
    needed = board.needed_size(offset, len(payload), cstring)
    new_size = needed if size is None else size
    if needed > new_size:
        raise board.too_large(
            place.label, len(payload), offset, new_size, cstring, FILE, NEVER_RESIZED
        )
    pieces = board.pieces_written(new_size, offset, payload, cstring)
    made = place.create(new_size, mode, pieces)
    if made is None:
        return False
    try:
        if sync:
            os.fsync(made)
    except OSError as err:
        raise from_os_error(place.label, err) from None
    finally:
        os.close(made)
    return True


def write_existing(
    mapped: files.MappedFile,
    payload: bytes,
    offset: int,
    size: int | None,
    cstring: bool,
    sync: bool,
) -> None:
    path = mapped.label
    if size is not None and size != mapped.size:
        raise UsageError(
            path, f"exists with {mapped.size} bytes; --size is for new files (never resized)"
        )
    board.check_offset(path, offset, mapped.size, FILE)
    needed = board.needed_size(offset, len(payload), cstring)
    if needed > mapped.size:
        raise board.too_large(path, len(payload), offset, mapped.size, cstring, FILE, NEVER_RESIZED)
    # Blocks first: another program may have made the file sparse, and a hole that a
    # full filesystem cannot fill is SIGBUS at the access (on tmpfs, even a read).
    for start, length in board.spans_touched(mapped.size, offset, len(payload), cstring):
        mapped.reserve(start, length)
    board.check_no_stream(path, mapped.view)
    board.write(mapped.view, offset, payload, cstring)
    if sync:
        mapped.sync()


def read_board(
    path: str, offset: int, length: int | None, hex_dump: bool, ready_fd: int | None
) -> None:
    mapped = files.open_file(path, writable=False)
    try:
        board.print_content(path, mapped.readable, offset, length, hex_dump, ready_fd, FILE)
    finally:
        mapped.close()
