"""What every message mechanism shares: send's and recv's loops, and recv's flag rules.

A message mechanism (msgq today; UDP, unix datagram sockets and redis later)
keeps only what is its own: naming and opening its object, putting a message
into it (an `Outlet`) and taking one out (an `Inbox`).

send_messages() reads stdin in the chosen framing, reads and checks the first
message BEFORE the object is created (so a closed stdin or a message over the
limit creates nothing), then puts messages in the order read; --stream goes
through ipctool/stream_protocol.py.

    send_messages(framing, limit=queue_limit, create=open_for_sending, label="0x3039")

receive() takes messages from an Inbox only to write them at once, and puts
back what it could not write (see RecordWriter for pipes).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ipctool.errors import (
    ExitCode,
    IpcError,
    StdoutClosed,
    Timeout,
    TooLarge,
    UsageError,
    WouldBlock,
    describe,
    from_os_error,
)
from ipctool.streams import STDIN, Framing, Oversized, WriteFailed, stdin_batches

if TYPE_CHECKING:
    from ipctool.streams import RecordWriter


# Stream channels (SysV message types) lie above every type a user is likely to
# pick: a receiver selects starts with -(STREAM_CHANNEL_BASE - 1), any type below.
STREAM_CHANNEL_BASE = 1 << 30


class Outlet(Protocol):
    """Where send_messages puts messages: what a mechanism's create() returns."""

    def put(self, message: bytes, channel: int | None = None) -> None:
        """Send one message, waiting as the user asked (--nowait, --timeout).
        channel: a stream's own (only where the mechanism has channels)."""

    def try_put(self, message: bytes, channel: int | None = None) -> None:
        """Send one message only if it can go at once; raise otherwise."""

    def take_all(self, channel: int) -> None:
        """Remove what waits on a stream's own channel (only with channels)."""

    # Optional: put_many(messages) sends a batch as put() would, one by one, in a
    # loop of the mechanism's own (a Python call per message is a fifth of a
    # small message's cost). send_messages uses it where the Outlet has it.
    #
    # Optional, with channels: send_pieces(fd, channel, size, magic, control_size)
    # -> (sent, eof, errno, rest) reads fd and sends each read (up to size bytes)
    # as a piece on the channel, blocking, in a loop of the mechanism's own, until
    # the input ends (eof), a read fails (errno; EINTR: a signal), or a piece is
    # not sent (rest: its send failed or was interrupted, or it is control_size
    # bytes starting with magic), returning at the latest after a bounded number
    # of pieces. sent: bytes sent. --stream uses it for stdin where the Outlet has
    # it; only where a signal ends its waits (the stream protocol keeps a
    # heartbeat beating). Offered only where send may block (not --nowait).


def send_messages(
    framing: Framing,
    *,
    limit: int,
    create: Callable[[], Outlet],
    label: str,
    data: bytes | None = None,
    terminator: bytes = b"",
    limit_of: str = "the object's",
    channels: bool = False,
    streams: bool = True,
) -> None:
    """send for any message mechanism: stdin (or `data`) in `framing`, as messages.

    limit: the largest message the object takes (or will take, once created).
    terminator: appended to every message but stream pieces (--cstring's NUL).
    limit_of: whose limit, for the too-large error line ("a new queue's").
    channels: the mechanism can keep a stream's pieces apart under a channel of
    their own, which a receiver selects (SysV message types); see stream_protocol.
    streams: the mechanism offers --stream (the too-large line suggests it).
    """
    from ipctool.waiting import waits_in_loop

    with waits_in_loop():
        if framing is Framing.STREAM:
            _send_stream(create, limit, label, data, limit_of, channels)
        else:
            _send_records(framing, create, limit, label, data, terminator, limit_of, streams)


def _send_records(
    framing: Framing,
    create: Callable[[], Outlet],
    limit: int,
    label: str,
    data: bytes | None,
    terminator: bytes,
    limit_of: str,
    streams: bool = True,
) -> None:
    room = limit - len(terminator)
    batches = _batches(framing, data, room, label, limit, limit_of, streams)
    first = next(batches, None)  # read and checked before anything is created
    outlet = create()
    put_many = getattr(outlet, "put_many", None) or _one_by_one(outlet.put)
    for batch in itertools.chain([first] if first is not None else [], batches):
        put_many([m + terminator for m in batch] if terminator else batch)


def _one_by_one(put: Callable[[bytes], None]) -> Callable[[list[bytes]], None]:
    def put_many(messages: list[bytes]) -> None:
        for message in messages:
            put(message)

    return put_many


def _send_stream(
    create: Callable[[], Outlet],
    limit: int,
    label: str,
    data: bytes | None,
    limit_of: str,
    channels: bool,
) -> None:
    """Pieces are cut from one byte stream: nothing is added to them."""
    from ipctool import stream_protocol

    if limit < stream_protocol.CONTROL_SIZE + 1:
        raise TooLarge(label, f"{limit_of} {limit}-byte messages are too small for --stream")
    room = stream_protocol.piece_size(limit, channels)
    batches = _batches(Framing.STREAM, data, room, label, limit, limit_of)
    first = next(batches, None)  # read before anything is created
    outlet = create()
    if first and data is None and channels and hasattr(outlet, "send_pieces"):
        # The rest of stdin in the outlet's own loop; the first read, here, has
        # already said what a closed stdin or a directory is.
        stream_protocol.send(outlet, first, channels, then=(STDIN, room))
        return
    pieces = itertools.chain.from_iterable(itertools.chain([first] if first else [], batches))
    stream_protocol.send(outlet, pieces, channels)


def _batches(
    framing: Framing,
    data: bytes | None,
    room: int,
    label: str,
    limit: int,
    limit_of: str,
    streams: bool = True,
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
            streams=streams,
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
    streams: bool = True,
) -> TooLarge:
    """A message over `limit` bytes, refused with the framings that would fit.

    cut: reading stopped once the message passed the limit, so `size` is a lower
    bound. record and not first: the records before this one went already.
    streams: the mechanism has --stream, which carries any size.
    """
    amount = f"more than {limit} bytes" if cut else f"{size} bytes"
    if not record:
        stream = "--stream splits any size; " if streams else ""
        what, hint = "message", f"{stream}--lines/--null send a message per record"
    elif streams:
        earlier = "" if first else " (earlier records were sent)"
        what, hint = "record", f"--stream carries data of any size{earlier}"
    else:
        what, hint = "record", "nothing was sent" if first else "earlier records were sent"
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


Message = tuple[bytes, Any]  # the data and what the mechanism tells with it (type, priority)
UNTIL_END = 0  # receive(count=UNTIL_END): every message until the source ends


class Ended(Exception):
    """No message can come from this source again: a connection's peer closed it.

    An Inbox raises it from its poller's receive or from wait(), with the reason
    as its text ("the peer closed the connection"). recv then stops: quietly with
    --follow or count=UNTIL_END; with --count N before N came, as an error."""


class Inbox(Protocol):
    """What recv's loops take messages from: a mechanism's open object."""

    label: str

    def poller(self, channel: int | None = None) -> tuple[Callable[[], Message], Empty]:
        """The library's own non-blocking receive of the selected messages, and what
        it raises when none is waiting. recv calls it once per message, with nothing
        in Python between, so it must be the C function itself (functools.partial).
        Its other errors go through translate()."""

    def wait(self, channel: int | None, timeout: float | None) -> Message:
        """Block for one message for up to `timeout` seconds (None: no limit) and
        raise Timeout after; recv polls first, so none is waiting now."""

    def recover(self, exc: BaseException) -> bool:
        """A receive failed with `exc`: True if it may be tried again now (a receive
        buffer sized before msgmax was raised has grown, say)."""

    def put_back(self, messages: list[Message]) -> None:
        """Messages taken but not written: send them again, in order (they come
        after whatever arrived since). Raise if they cannot go back."""

    def translate(self, exc: BaseException) -> BaseException:
        """The library's exception as an ipctool error naming the object."""

    # Optional: take_many(most) -> list[Message] takes up to `most` of the selected
    # messages in one call of the mechanism's own, without waiting: [] if none is
    # waiting. It raises the library's error (as poller()'s receive would) only
    # when nothing could be taken; after a batch, it must be the next call that
    # raises. recv uses it where the Inbox has it, and poller() otherwise.
    #
    # Optional: `paced = False` for an inbox that cannot put messages back and
    # loses what it still holds when recv ends (a datagram socket): recv then
    # writes into a pipe in batches without waiting for its reader to empty it
    # (a wait would not save a message, and would let a fast sender's datagrams
    # overflow the socket's buffer meanwhile).
    #
    # Optional, with channels: receive_pieces(channel, fd, block, magic, control_size)
    # -> (written, pieces, control, stop, write_error) takes a stream's pieces from
    # the channel (waiting for each when block is true) and writes each whole to
    # fd, in a loop of the mechanism's own, returning at the latest after a
    # bounded number of pieces; `control` when it took a control message
    # (control_size bytes starting with magic), not written. stop: why it stopped
    # before: InterruptedError (a signal ended a wait), the library's "empty"
    # error of poller() (nothing waiting, without block) or another error of the
    # receive (for recover() and translate()). write_error: the OSError of a
    # write to fd, after `written` bytes got out. --stream uses it where the
    # Inbox has it (the stream protocol keeps a heartbeat beating).


Taker = Callable[[int], tuple[list[Message], BaseException | None]]
Empty = type[BaseException] | tuple[type[BaseException], ...]
BATCH = 1024  # messages gathered before one write: bounded, so output keeps flowing


def receive(
    inbox: Inbox,
    framing: Framing,
    *,
    count: int = 1,
    follow: bool = False,
    nowait: bool = False,
    timeout: float | None = None,
    as_json: bool = False,
    cstring: bool = False,
    meta_key: str | None = None,
) -> None:
    """recv for any message mechanism: messages from `inbox` to stdout in `framing`.

    `count` messages, or with `follow` all until --timeout seconds pass without
    one (then exit 0) or Ctrl-C; count=UNTIL_END: all until the inbox raises
    Ended (a connection's peer closed it; a --timeout is then exit 124);
    --stream: one whole stream. nowait: never wait
    (WouldBlock, exit 5; with follow, stop quietly once nothing is waiting).
    With as_json, each message is one JSON line with `meta_key` holding its meta.

    A message leaves the kernel only to be written at once: a write that fails
    (a full disk, a closed pipe) puts what it did not write back into the
    object (Inbox.put_back, at the end) and says so. Into a pipe, recv takes
    one message at a time and the next only once the reader has read the pipe
    empty (RecordWriter.wait_read), so a reader that leaves (`| head -1`)
    takes only what it read.
    """
    from ipctool.streams import RecordWriter
    from ipctool.waiting import waits_in_loop

    writer = RecordWriter(framing, cstring, as_json=as_json, meta_key=meta_key)
    with waits_in_loop():
        if framing is Framing.STREAM:
            _receive_stream(inbox, writer, nowait, timeout)
        else:
            _receive_messages(inbox, writer, count, follow, nowait, timeout)


def _waiter(inbox: Inbox, nowait: bool, timeout: float | None) -> Callable[[], Message]:
    def wait() -> Message:
        if nowait:
            raise WouldBlock(inbox.label, "no message")
        return inbox.wait(None, timeout)

    return wait


def _receive_messages(
    inbox: Inbox,
    writer: RecordWriter,
    count: int,
    follow: bool,
    nowait: bool,
    timeout: float | None,
) -> None:
    from ipctool.waiting import interrupts_deferred

    take = _taker(inbox)
    wait = _waiter(inbox, nowait, timeout)
    paced = writer.pipe and getattr(inbox, "paced", True)
    most = 1 if paced else BATCH
    remaining = -1 if follow or count == UNTIL_END else count
    while remaining:
        with interrupts_deferred():  # what left the kernel is written before Ctrl-C acts
            batch, failure = take(most if remaining < 0 else min(most, remaining))
            if remaining > 0:
                remaining -= len(batch)
            if not batch and failure is None:
                try:
                    batch = [wait()]
                except (Timeout, WouldBlock):
                    if follow:
                        break
                    raise
                except (IpcError, StdoutClosed):  # our reader gone while we waited: 141
                    raise
                except Exception as exc:
                    failure = exc
                else:
                    remaining -= 1
                    if remaining and most > 1:  # what came meanwhile goes in the same write
                        room = most - 1 if remaining < 0 else min(most - 1, remaining)
                        more, failure = take(room)
                        batch += more
                        if remaining > 0:
                            remaining -= len(more)
            if batch:
                _deliver(inbox, writer, batch)
        if isinstance(failure, Ended):
            if remaining < 0:
                break
            raise IpcError(inbox.label, f"{failure} after {count - remaining} of {count} messages")
        if failure is not None:
            if not inbox.recover(failure):
                raise inbox.translate(failure) from None
            take = _taker(inbox)
        if paced and remaining and batch:  # outside the deferral: Ctrl-C ends it
            try:
                writer.wait_read()
            except WriteFailed as failed:
                raise _write_failure(inbox, failed) from None


def _taker(inbox: Inbox) -> Taker:
    """take(n): up to n waiting messages without waiting, and the failure that
    stopped it (None: n taken, or none was left). The inbox's own take_many if it
    has one, else a loop of its poller()'s receive: a counted loop, with no test or
    arithmetic per message in Python."""
    take_many: Callable[[int], list[Message]] | None = getattr(inbox, "take_many", None)
    if take_many is not None:

        def take_batch(most: int) -> tuple[list[Message], BaseException | None]:
            try:
                return take_many(most), None
            except Exception as exc:
                return [], exc

        return take_batch
    poll, empty = inbox.poller()

    def take_each(most: int) -> tuple[list[Message], BaseException | None]:
        batch: list[Message] = []
        append = batch.append
        try:
            for _ in itertools.repeat(None, most):
                append(poll())
        except empty:
            pass
        except Exception as exc:  # the batch so far still goes out first
            return batch, exc
        return batch, None

    return take_each


def _deliver(inbox: Inbox, writer: RecordWriter, batch: list[Message]) -> None:
    try:
        writer.write_messages(batch)
    except WriteFailed as failed:
        raise _write_failure(inbox, failed) from None


class _ReaderGone(IpcError):
    exit_code = ExitCode.BROKEN_PIPE


def _write_failure(inbox: Inbox, failed: WriteFailed) -> BaseException:
    """The error a failed write ends recv with, once the messages it did not write
    are back in the object (or said to be lost). A reader that went away is a
    quiet exit 141, unless messages were lost (except from an unpaced inbox,
    whose messages a reader leaving loses anyway: those it still held, and
    those that come after)."""
    count = len(failed.unwritten)
    some = f"{count} message{'s' * (count != 1)}"
    note = ""
    if count and not getattr(inbox, "paced", True):
        if isinstance(failed.error, BrokenPipeError):
            return failed.error
        note = f"; {some} taken from {inbox.label} not written: lost"
    elif count:
        try:
            inbox.put_back(failed.unwritten)
            note = f"; {some} not written put back in {inbox.label} (at the end)"
        except Exception as exc:
            error = exc if isinstance(exc, IpcError) else inbox.translate(exc)
            reason = error.reason if isinstance(error, IpcError) else describe(error)
            note = f"; {some} taken from {inbox.label} could not be put back ({reason}): lost"
    if isinstance(failed.error, BrokenPipeError):
        if note.endswith("lost"):
            return _ReaderGone("stdout", "the reader went away" + note)
        return failed.error
    error = from_os_error("stdout", failed.error)
    error.reason += note
    return error


def _receive_stream(
    inbox: Inbox, writer: RecordWriter, nowait: bool, timeout: float | None
) -> None:
    from ipctool import stream_protocol
    from ipctool.runner import warn

    def warning(text: str) -> None:
        warn(inbox.label, text)

    stream_protocol.receive(inbox, writer, nowait=nowait, timeout=timeout, warn=warning)
