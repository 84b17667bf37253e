"""shm send and recv: a segment as a blackboard, or (--stream) as a ring buffer.

sysv_ipc and posix_ipc load inside the verbs, via .segments. inspect and clean are
the core's, from objects.ShmSource.

No `from __future__ import annotations` here: typer reads these annotations.
"""

from typing import Annotated

import typer

from ipctool.api import (
    DEFAULT_MODE,
    Data,
    IpcTarget,
    Mode,
    NotFound,
    PermissionDenied,
    ReadyFd,
    TimeoutOption,
    UsageError,
    new_app,
    parse_ipc_target,
)
from ipctool_plugins.shm.options import HexDump, Length, SendCString

app = new_app(
    help="""Shared memory: SysV (KEY in decimal or 0x-hex, or --id ID) and POSIX (/NAME).

Blackboard (default): send writes stdin into the segment, creating it (mode 0600
unless --mode, sized to fit) if missing; recv prints what is there. ipctool marks
where its data ends in a trailer at the segment's end, so recv gives back exact
bytes; a segment without it (a C program's) prints up to its first NUL.

Stream (--stream): any amount of data through the segment used as a ring buffer,
with one send and one recv running at once, either first.""",
    epilog="""\b
Examples:
  echo hello | ipctool shm send 12345 && ipctool shm recv 12345
  ipctool shm recv 12345 --hex
  cat big.iso | ipctool shm send 777 --stream &  ipctool shm recv 777 --stream > copy.iso
  ipctool shm inspect --limits""",
)

Target = Annotated[
    str | None,
    typer.Argument(metavar="[KEY|/NAME]", help="SysV key (12345, 0x3039) or POSIX /name."),
]
SegmentId = Annotated[
    int | None,
    typer.Option("--id", metavar="ID", min=0, help="A SysV segment by the id ipcs shows."),
]
Offset = Annotated[
    int, typer.Option("--offset", metavar="N", min=0, help="Start N bytes into the segment.")
]
Size = Annotated[
    int | None,
    typer.Option(
        "--size",
        metavar="BYTES",
        min=1,
        help="Size of a new segment (default: what the data needs; --stream: 4 MiB).",
    ),
]
Stream = Annotated[
    bool,
    typer.Option(
        "--stream", help="Any size, through the segment as a ring buffer (send and recv at once)."
    ),
]
Keep = Annotated[
    bool,
    typer.Option("--keep", help="--stream: keep the segment after the stream (default: remove)."),
]


SEGMENT = "segment"  # the noun in board's error lines


def resolve(target: str | None, segment_id: int | None) -> IpcTarget:
    return parse_ipc_target(target, segment_id)


def existing_room(where: IpcTarget, offset: int, cstring: bool) -> int | None:
    """How much fits in the segment the target names, or None if there is none
    (a new one is made to fit)."""
    from ipctool_plugins.shm import board, segments

    try:
        segment = segments.open_segment(where, readonly=True)
    except (NotFound, PermissionDenied):
        return None  # write_board says so, after the read, as before
    try:
        return board.room(segment.size, offset, cstring)
    finally:
        segment.close()


@app.command()
def send(
    target: Target = None,
    segment_id: SegmentId = None,
    data: Data = None,
    offset: Offset = 0,
    size: Size = None,
    cstring: SendCString = False,
    stream: Stream = False,
    mode: Mode = DEFAULT_MODE,
    timeout: TimeoutOption = None,
    keep: Keep = False,
    ready_fd: ReadyFd = None,
) -> None:
    """Write stdin (or --data) into the segment, created if missing; --stream for any size.

    Data that does not fit an existing segment is an error (exit 7) before anything
    is written. The end of the data is recorded in a 16-byte trailer at the segment's
    end (see the README); --cstring writes a NUL after the data instead.

    \b
    Examples:
      echo hello | ipctool shm send 12345
      ipctool shm send /board --data 'Hello, world!' --cstring
      ipctool shm send 0x3039 --offset 64 < part.bin
      tar c dir | ipctool shm send 777 --stream
    """
    where = resolve(target, segment_id)
    if stream:
        from ipctool_plugins.shm.stream import stream_send

        reject_blackboard_options(offset, cstring, data)
        stream_send(where, size, mode, timeout, keep, ready_fd)
        return
    from ipctool_plugins.shm import board

    limit = None if data is not None else existing_room(where, offset, cstring)
    write_board(where, board.read_input(data, limit), offset, size, cstring, mode)


def reject_blackboard_options(offset: int, cstring: bool, data: str | None) -> None:
    if offset or cstring or data is not None:
        raise UsageError(
            None, "--offset, --cstring and --data are for blackboard mode, not --stream"
        )


def write_board(
    where: IpcTarget, payload: bytes, offset: int, size: int | None, cstring: bool, mode: int
) -> None:
    from ipctool_plugins.shm import board, segments

    needed = board.needed_size(offset, len(payload), cstring)
    try:
        segment = segments.open_segment(where, readonly=False)
    except NotFound:
        if where.id is not None:
            raise
        new_size = needed if size is None else size
        if needed > new_size:
            raise board.too_large(
                where.label, len(payload), offset, new_size, cstring, SEGMENT
            ) from None
        segment = segments.open_or_create(where, new_size, mode)
    try:
        if size is not None and not segment.created and size != segment.size:
            raise UsageError(
                where.label, f"exists with {segment.size} bytes; --size is for new ones"
            )
        board.check_offset(where.label, offset, segment.size, SEGMENT)
        if needed > segment.size:
            raise board.too_large(
                where.label, len(payload), offset, segment.size, cstring, SEGMENT
            )
        # Pages first: even reading a hole of a POSIX object's mapping takes a page,
        # and on a full /dev/shm that is SIGBUS.
        for start, length in board.spans_touched(segment.size, offset, len(payload), cstring):
            segment.reserve(start, length)
        board.check_no_stream(where.label, segment.view)
        board.write(segment.view, offset, payload, cstring)
    finally:
        segment.close()


@app.command()
def recv(
    target: Target = None,
    segment_id: SegmentId = None,
    offset: Offset = 0,
    length: Length = None,
    hex_dump: HexDump = False,
    stream: Stream = False,
    size: Size = None,
    mode: Mode = DEFAULT_MODE,
    timeout: TimeoutOption = None,
    keep: Keep = False,
    ready_fd: ReadyFd = None,
) -> None:
    """Print the segment's data; --stream copies a stream from send to stdout.

    Blackboard: from --offset to the end ipctool's trailer records, or without
    one up to the first NUL (what a C program wrote), or --length N bytes.

    \b
    Examples:
      ipctool shm recv 12345
      ipctool shm recv 12345 --hex --length 64
      ipctool shm recv 777 --stream > copy.tar
    """
    where = resolve(target, segment_id)
    if stream:
        from ipctool_plugins.shm.stream import stream_recv

        if offset or length is not None or hex_dump:
            raise UsageError(None, "--offset, --length and --hex are for blackboard mode")
        stream_recv(where, size, mode, timeout, keep, ready_fd)
        return
    read_board(where, offset, length, hex_dump, ready_fd)


def read_board(
    where: IpcTarget, offset: int, length: int | None, hex_dump: bool, ready_fd: int | None
) -> None:
    from ipctool_plugins.shm import board, segments

    segment = segments.open_segment(where, readonly=True)
    try:
        board.print_content(
            where.label, segment.readable, offset, length, hex_dump, ready_fd, SEGMENT
        )
    finally:
        segment.close()
