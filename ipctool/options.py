"""Options every plugin's verbs share, as typer annotations: declared once, here.

A verb names them in its signature, e.g. `timeout: Timeout = None`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from ipctool.errors import UsageError
from ipctool.targets import parse_duration, parse_fd, parse_mode, parse_timeout


def _parser(parse: Callable[[str], object]) -> Callable[[object], object]:
    def convert(value: object) -> object:
        if not isinstance(value, str):
            return value  # a default that is already converted
        try:
            return parse(value)
        except UsageError as err:
            raise typer.BadParameter(err.reason) from None

    return convert


Timeout = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        parser=_parser(parse_timeout),
        help="Wait at most SECONDS (exit 124 after); inf waits forever.",
    ),
]
Nowait = Annotated[bool, typer.Option("--nowait", help="Never wait: exit 5 if it would block.")]
Json = Annotated[bool, typer.Option("--json", help="JSON for scripts (keys in the README).")]
DryRun = Annotated[bool, typer.Option("--dry-run", "-n", help="Show what would go; touch nothing.")]
Force = Annotated[
    bool, typer.Option("--force", help="Also remove objects in use or owned by other users.")
]
Stale = Annotated[bool, typer.Option("--stale", help="Remove every stale object (see README).")]
OlderThan = Annotated[
    float | None,
    typer.Option(
        "--older-than",
        metavar="AGE",
        parser=_parser(parse_duration),
        help="With --stale: idle for longer than AGE (90s, 15m, 2h, 7d).",
    ),
]
Mode = Annotated[
    int,
    typer.Option(
        "--mode",
        metavar="OCTAL",
        parser=_parser(parse_mode),
        show_default="0600",
        help="Permissions of a new object.",
    ),
]
Data = Annotated[
    str | None, typer.Option("--data", metavar="TEXT", help="Send TEXT (UTF-8) instead of stdin.")
]
Lines = Annotated[bool, typer.Option("--lines", help="One message per line.")]
Null = Annotated[bool, typer.Option("--null", "-0", help="One message per NUL-terminated record.")]
Stream = Annotated[
    bool, typer.Option("--stream", help="Any size, as full-size messages and an end marker.")
]
Count = Annotated[
    int, typer.Option("--count", "-c", metavar="N", min=1, help="Receive N messages.")
]
Follow = Annotated[
    bool,
    typer.Option("--follow", "-f", help="Keep receiving until Ctrl-C or --timeout of idleness."),
]
CString = Annotated[
    bool,
    typer.Option("--cstring", help="Stop each message at its first NUL, as C's %s does."),
]
ReadyFd = Annotated[
    int | None,
    typer.Option(
        "--ready-fd",
        metavar="N",
        parser=_parser(parse_fd),
        help="Once ready (object open, about to wait), write the target and a newline "
        "to fd N and close it; or set IPCTOOL_READY_FD=N.",
    ),
]
KeepOpen = Annotated[
    bool,
    typer.Option(
        "--keep-open",
        "-k",
        help="Serve connections one after another (until Ctrl-C, or --timeout seconds "
        "without a new one).",
    ),
]
NoReply = Annotated[
    bool,
    typer.Option(
        "--no-reply",
        help="End once stdin is sent (half-closed): do not wait for the peer's reply.",
    ),
]
