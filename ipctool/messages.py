"""What every message mechanism shares: send's loop, and recv's flag rules.

A message mechanism (msgq today; UDP, unix datagram sockets and redis later)
keeps only what is its own: naming and opening its object, and putting one
message into it. The loop here reads stdin in the chosen framing, reads and
checks the first message BEFORE the object is created (so a closed stdin or a
message over the limit creates nothing), then puts messages in the order read.

    send_messages(framing, limit=queue_limit, create=open_for_sending, label="0x3039")

`create()` is called once, after the first message is ready, and returns the
`Outlet` that takes the messages.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Protocol

from ipctool.errors import TooLarge, UsageError
from ipctool.streams import Framing, Oversized, stdin_batches


class Outlet(Protocol):
    """Where send_messages puts messages: what a mechanism's create() returns."""

    def put(self, message: bytes) -> None:
        """Send one message, waiting as the user asked (--nowait, --timeout)."""


def send_messages(
    framing: Framing,
    *,
    limit: int,
    create: Callable[[], Outlet],
    label: str,
    data: bytes | None = None,
    terminator: bytes = b"",
    limit_of: str = "the object's",
) -> None:
    """send for any message mechanism: stdin (or `data`) in `framing`, as messages.

    limit: the largest message the object takes (or will take, once created).
    terminator: appended to every message but stream pieces (--cstring's NUL).
    limit_of: whose limit, for the too-large error line ("a new queue's").
    """
    if framing is Framing.STREAM:
        terminator = b""  # pieces are cut from one byte stream: nothing is added
    room = limit - len(terminator)
    batches = _batches(framing, data, room, label, limit, limit_of)
    first = next(batches, None)  # read and checked before anything is created
    put = create().put
    for batch in itertools.chain([first] if first is not None else [], batches):
        for message in [m + terminator for m in batch] if terminator else batch:
            put(message)
    if framing is Framing.STREAM:
        put(b"")  # the end marker


def _batches(
    framing: Framing, data: bytes | None, room: int, label: str, limit: int, limit_of: str
) -> Iterator[list[bytes]]:
    """stdin_batches, with an oversized message or record as TooLarge for `label`."""
    try:
        yield from stdin_batches(framing, data, room)
    except Oversized as big:
        raise too_large(
            label,
            big.size + (limit - room),
            limit,
            limit_of=limit_of,
            record=framing in (Framing.LINES, Framing.NULL),
            cut=big.cut,
            first=big.first,
        ) from None


def too_large(
    label: str,
    size: int,
    limit: int,
    *,
    limit_of: str = "the object's",
    record: bool = False,
    cut: bool = False,
    first: bool = True,
) -> TooLarge:
    """A message over `limit` bytes, refused with the framings that would fit.

    cut: reading stopped once the message passed the limit, so `size` is a lower
    bound. record and not first: the records before this one went already.
    """
    amount = f"more than {limit} bytes" if cut else f"{size} bytes"
    if not record:
        what, hint = "message", "--stream splits any size; --lines/--null send a message per record"
    elif first:
        what, hint = "record", "--stream carries data of any size"
    else:
        what, hint = "record", "--stream carries data of any size (earlier records were sent)"
    return TooLarge(label, f"a {what} of {amount} is over {limit_of} {limit}-byte limit; {hint}")


def recv_framing(
    lines: bool = False,
    null: bool = False,
    stream: bool = False,
    *,
    count: int = 1,
    follow: bool = False,
    as_json: bool = False,
) -> Framing:
    """recv's framing from its flags, and the rules that join them, checked before
    anything is opened (a usage error touches nothing)."""
    from ipctool.streams import framing_from_flags

    framing = framing_from_flags(lines, null, stream)
    if framing is Framing.STREAM and (follow or as_json or count != 1):
        raise UsageError(None, "--stream receives one whole stream; drop --count/--follow/--json")
    if follow and count != 1:
        raise UsageError(None, "--follow receives until stopped; --count N stops after N")
    return framing
