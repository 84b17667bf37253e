"""Output for people (rich tables, imported only here) and for scripts (JSON)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any


def _stdout() -> Any:
    if sys.stdout is None:  # started with stdout closed (>&-)
        from ipctool.errors import IpcError

        raise IpcError("stdout", "closed")
    return sys.stdout


def stdout_writer() -> Any:
    """stdout for text, or a one-line error now if it is closed (before a verb acts)."""
    return _stdout()


def printable(text: str) -> str:
    """Text safe for a terminal and one line: control characters (escape sequences,
    newlines) and undecodable bytes are shown escaped, as Python's repr shows them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def print_json(document: Any) -> None:
    """One JSON document on stdout (for --json of inspect, clean, plugins)."""
    import json

    _stdout()
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def json_line(record: dict[str, Any]) -> bytes:
    """One compact JSON object and a newline (for streams of records, e.g. recv --json)."""
    import json

    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def data_fields(data: bytes) -> dict[str, Any]:
    """`data` as text when it is valid UTF-8, else base64; `encoding` says which."""
    try:
        return {"size": len(data), "encoding": "utf-8", "data": data.decode("utf-8")}
    except UnicodeDecodeError:
        import base64

        return {"size": len(data), "encoding": "base64", "data": base64.b64encode(data).decode()}


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "none"
) -> None:
    """A table for people; rich is imported here, on the verbs that print one."""
    from rich.console import Console
    from rich.table import Table

    title = printable(title)
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        table.add_row(*("" if cell is None else printable(str(cell)) for cell in row))
        count += 1
    # Piped into grep or less, rows stay whole instead of folding at 80 columns.
    # markup and emoji off: a name such as /q[bold] or /a:smile: is shown as it is.
    console = Console(
        soft_wrap=False,
        width=None if _stdout().isatty() else 250,
        markup=False,
        emoji=False,
        highlight=False,
    )
    if count:
        console.print(table)
    else:
        console.print(f"{title}: {empty}")
