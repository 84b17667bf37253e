"""The blackboard options shm and mmap share word for word (board.py's layout
is the same in a segment and a file). Imported by both plugins' commands."""

from typing import Annotated

import typer

Length = Annotated[
    int | None,
    typer.Option("--length", metavar="N", min=0, help="Exactly N bytes (ignore the trailer)."),
]
HexDump = Annotated[
    bool, typer.Option("--hex", help="A hex dump to read (as hexdump -C), not raw bytes.")
]
SendCString = Annotated[
    bool,
    typer.Option("--cstring", help="Write the data and a NUL, no trailer: for C's %s."),
]
