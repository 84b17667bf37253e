"""Blackboard mode over a file: shm's layout (board.py), the file's own rules.

An existing file keeps its size: data that does not fit is exit 7 before a byte
is written. A new one appears whole, data and trailer already in it.
"""

from __future__ import annotations

import os

from ipctool.api import NotFound, TooLarge, UsageError, announce_ready, from_os_error
from ipctool_plugins.mmap import files
from ipctool_plugins.shm import board


def read_input(data: str | None) -> bytes:
    """--data, or stdin through the core's reader (a directory as stdin is an error)."""
    if data is not None:
        return os.fsencode(data)  # bytes as typed, even non-UTF-8
    from ipctool.streams import read_all

    return read_all()


def check_offset(path: str, offset: int, size: int) -> None:
    if offset > size:
        raise UsageError(path, f"offset {offset} is past the file's end ({size} bytes)")


def too_large(path: str, length: int, offset: int, size: int, cstring: bool) -> TooLarge:
    fits = board.room(size, offset, cstring)
    mark = "a NUL" if cstring else f"the {board.TRAILER_SIZE}-byte end trailer"
    return TooLarge(
        path,
        f"{length} bytes at offset {offset} do not fit a {size}-byte file "
        f"({fits} fit there with {mark}); nothing written, the file is never resized",
    )


def new_image(payload: bytes, offset: int, size: int, cstring: bool) -> bytes:
    image = bytearray(size)
    with memoryview(image) as view:
        board.write(view, offset, payload, cstring)
    return bytes(image)


def write_board(
    path: str, payload: bytes, offset: int, size: int | None, cstring: bool, mode: int, sync: bool
) -> None:
    needed = board.needed_size(offset, len(payload), cstring)
    try:
        mapped = files.open_file(path, writable=True)
    except NotFound:
        new_size = needed if size is None else size
        if needed > new_size:
            raise too_large(path, len(payload), offset, new_size, cstring) from None
        made = files.create_new(path, new_size, mode, new_image(payload, offset, new_size, cstring))
        if made is not None:
            if sync:
                os.fsync(made)
            os.close(made)
            return
        mapped = files.open_file(path, writable=True)  # another process made it first
    try:
        write_existing(mapped, payload, offset, size, cstring, sync)
    finally:
        mapped.close()


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
    check_offset(path, offset, mapped.size)
    needed = board.needed_size(offset, len(payload), cstring)
    if needed > mapped.size:
        raise too_large(path, len(payload), offset, mapped.size, cstring)
    board.write(mapped.view, offset, payload, cstring)
    if sync:
        mapped.sync()


def read_board(
    path: str, offset: int, length: int | None, hex_dump: bool, ready_fd: int | None
) -> None:
    mapped = files.open_file(path, writable=False)
    try:
        check_offset(path, offset, mapped.size)
        if length is not None and offset + length > mapped.size:
            raise UsageError(
                path,
                f"{length} bytes at offset {offset} run past the file's end ({mapped.size} bytes)",
            )
        announce_ready(path, ready_fd)
        data = board.content(mapped.view, offset, length)
        if hex_dump:
            text = "\n".join(board.hex_dump(bytes(data), offset)) + "\n"
            write_out(memoryview(text.encode()))
        else:
            write_out(data)
        data.release()
    finally:
        mapped.close()


def write_out(view: memoryview) -> None:
    """All of it to stdout; our reader gone is the quiet 141."""
    from ipctool.api import StdoutClosed

    while view:
        try:
            view = view[os.write(1, view) :]
        except BrokenPipeError:
            raise StdoutClosed from None
        except OSError as err:
            raise from_os_error("stdout", err) from None
