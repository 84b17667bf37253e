"""mmap send and recv: a file mapped MAP_SHARED, as a blackboard or (--stream) a ring.

The layouts are shm's (board.py, ring.py): a file mapping is the same memory.
inspect and clean are the core's, from objects.MmapSource.

No `from __future__ import annotations` here: typer reads these annotations.
"""

from typing import Annotated

import typer

from ipctool.api import (
    DEFAULT_MODE,
    Data,
    Mode,
    ReadyFd,
    TimeoutOption,
    UsageError,
    new_app,
)
from ipctool_plugins.shm.options import HexDump, Length, SendCString

app = new_app(
    help="""Memory-mapped files by PATH: a file mapped MAP_SHARED by every process.

Blackboard (default): send writes stdin into the file at --offset, creating it
(mode 0600 unless --mode, sized to fit or --size) if missing; recv prints what is
there. The end of the data is marked as in shm (a 16-byte trailer at the file's
end; a file without it prints up to its first NUL). An existing file is never
resized: data that does not fit is exit 7, nothing written. Only regular files:
a symbolic link, directory, device, FIFO or socket is refused, untouched.

Stream (--stream): any amount of data through the file used as a ring buffer,
with one send and one recv running at once, either first.""",
    epilog="""\b
Examples:
  echo hello | ipctool mmap send /tmp/board && ipctool mmap recv /tmp/board
  ipctool mmap send /tmp/test --cstring --data 'Hello, world'
  ipctool mmap recv /tmp/test --hex --length 64
  tar c dir | ipctool mmap send ./ring --stream &  ipctool mmap recv ./ring --stream | tar x""",
)

Path = Annotated[str, typer.Argument(metavar="PATH", help="The file's path.")]
Offset = Annotated[
    int, typer.Option("--offset", metavar="N", min=0, help="Start N bytes into the file.")
]
Size = Annotated[
    int | None,
    typer.Option(
        "--size",
        metavar="BYTES",
        min=1,
        help="Size of a new file (default: what the data needs; --stream: 4 MiB).",
    ),
]
Stream = Annotated[
    bool,
    typer.Option(
        "--stream", help="Any size, through the file as a ring buffer (send and recv at once)."
    ),
]
Keep = Annotated[
    bool,
    typer.Option("--keep", help="--stream: keep a file the stream created (default: remove)."),
]


@app.command()
def send(
    path: Path,
    data: Data = None,
    offset: Offset = 0,
    size: Size = None,
    cstring: SendCString = False,
    sync: Annotated[
        bool, typer.Option("--sync", help="msync: the data is on disk when send ends.")
    ] = False,
    stream: Stream = False,
    mode: Mode = DEFAULT_MODE,
    timeout: TimeoutOption = None,
    keep: Keep = False,
    ready_fd: ReadyFd = None,
) -> None:
    """Write stdin (or --data) into the file, created if missing; --stream for any size.

    Data that does not fit an existing file is an error (exit 7) before anything is
    written: ipctool never resizes a file. The end of the data is recorded in a
    16-byte trailer at the file's end (as in shm); --cstring writes a NUL after the
    data instead, for C readers such as the lecture's.

    \b
    Examples:
      echo hello | ipctool mmap send /tmp/board
      ipctool mmap send /tmp/test --data 'Hello, world' --cstring
      ipctool mmap send ./board --offset 64 --sync < part.bin
      tar c dir | ipctool mmap send ./ring --stream
    """
    if stream:
        from ipctool_plugins.mmap.stream import stream_side

        if offset or cstring or sync or data is not None:
            raise UsageError(
                None, "--offset, --cstring, --sync and --data are for blackboard mode"
            )
        stream_side(path, size, mode, timeout, keep, ready_fd, sending=True)
        return
    from ipctool_plugins.mmap.blackboard import room_for, write_board
    from ipctool_plugins.shm.board import read_input

    # An existing file's room bounds the read: endless stdin is exit 7, not all of it
    # held in memory first.
    limit = None if data is not None else room_for(path, offset, cstring)
    write_board(path, read_input(data, limit), offset, size, cstring, mode, sync)


@app.command()
def recv(
    path: Path,
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
    """Print the file's data; --stream copies a stream from send to stdout.

    Blackboard: from --offset to the end ipctool's trailer records, or without one
    up to the first NUL (what a C program wrote), or --length N bytes.

    \b
    Examples:
      ipctool mmap recv /tmp/board
      ipctool mmap recv /tmp/test --hex --length 64
      ipctool mmap recv ./ring --stream > copy.tar
    """
    if stream:
        from ipctool_plugins.mmap.stream import stream_side

        if offset or length is not None or hex_dump:
            raise UsageError(None, "--offset, --length and --hex are for blackboard mode")
        stream_side(path, size, mode, timeout, keep, ready_fd, sending=False)
        return
    from ipctool_plugins.mmap.blackboard import read_board

    read_board(path, offset, length, hex_dump, ready_fd)
