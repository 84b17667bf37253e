"""--stream over any message mechanism: a start, pieces and an end, each stream
named, so that a receiver never takes one stream's pieces for another's.

On the wire (every control message has the same size and starts with MAGIC):

  START  MAGIC "S" id pid start_time pid_ns channel    on the main channel
  piece  the data, on the stream's own channel          (mechanisms with channels)
         or "P" id seq + the data, on the main channel  (all others)
  END    MAGIC "E" id bytes                             after the last piece
  ABORT  MAGIC "A" id bytes                             from a sender stopped midway

`id` is random; `pid`, `start_time` (from /proc/PID/stat) and `pid_ns` say who
sends, so a receiver can tell whether the sender still runs. A mechanism with
channels (SysV message types) puts each stream's pieces under a channel of its
own, which the receiver learns from START and then selects: streams sent at
once stay apart, and the leftovers of an interrupted stream are never seen by
the next one. Without channels (POSIX queues, datagrams), each piece carries
the stream's id and a sequence number: pieces of another stream, or missing
ones, are detected, never written.

A receiver skips (with a warning) what comes before a START, and a stream
whose sender is gone without finishing it. It fails (exit 1) when the stream
it is writing breaks: the sender stopped (ABORT) or died, another stream's
pieces or a gap came, or END counts other bytes than arrived.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ipctool.errors import IpcError, Timeout, WouldBlock
from ipctool.messages import STREAM_CHANNEL_BASE

if TYPE_CHECKING:
    from ipctool.messages import Inbox, Message, Outlet
    from ipctool.streams import RecordWriter
    from ipctool.waiting import Deadline

MAGIC = b"\xffipctool-stream\x00"
_CONTROL = struct.Struct("!16scQQQQq")  # magic, kind, id, then four numbers
CONTROL_SIZE = _CONTROL.size
START, END, ABORT = b"S", b"E", b"A"
_PIECE = struct.Struct("!cQI")  # "P", stream id, sequence number
_PIECE_PREFIX, _SEQ = struct.Struct("!cQ"), struct.Struct("!I")  # its two parts
PIECE_HEADER = _PIECE.size
PIECE = b"P"
CHANNEL_BASE = STREAM_CHANNEL_BASE
HEARTBEAT = 0.5  # seconds between looks at whether a live stream's sender still runs


@dataclass(frozen=True)
class Start:
    """Who sends a stream, and where its pieces travel."""

    id: int
    pid: int
    start_time: int
    pid_ns: int
    channel: int  # -1: the pieces carry the id (no channels)

    @classmethod
    def new(cls, channels: bool) -> Start:
        pid = os.getpid()
        ident = int.from_bytes(os.urandom(8), "big")
        # The pid keeps the channels of running senders apart; the random low
        # bits keep a new sender off the leftovers of an old one with its pid.
        channel = CHANNEL_BASE + (pid << 8 | ident & 0xFF) if channels else -1
        return cls(ident, pid, process_start_time(pid) or 0, own_pid_ns(), channel)

    def encode(self) -> bytes:
        fields = (self.pid, self.start_time, self.pid_ns, self.channel)
        return _CONTROL.pack(MAGIC, START, self.id, *fields)

    def sender_alive(self) -> bool:
        """Whether the sender still runs; True when this process cannot tell (the
        sender is in another pid namespace)."""
        if self.pid_ns != own_pid_ns():
            return True
        return process_start_time(self.pid) == self.start_time


def control(kind: bytes, ident: int, count: int) -> bytes:
    return _CONTROL.pack(MAGIC, kind, ident, count, 0, 0, 0)


def parse_control(data: bytes) -> tuple[bytes, int, tuple[int, int, int, int]] | None:
    """(kind, id, numbers) of a control message, or None for anything else."""
    if len(data) != CONTROL_SIZE or not data.startswith(MAGIC):
        return None
    _, kind, ident, *numbers = _CONTROL.unpack(data)
    return kind, ident, (numbers[0], numbers[1], numbers[2], numbers[3])


def parse_start(data: bytes) -> Start | None:
    parsed = parse_control(data)
    if parsed is None or parsed[0] != START:
        return None
    return Start(parsed[1], *parsed[2])


def process_start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot), which tells it from a
    later process that got the same pid; None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[19])  # field 22, counted after the name


_pid_ns: int | None = None


def own_pid_ns() -> int:
    global _pid_ns
    if _pid_ns is None:
        try:
            _pid_ns = os.stat("/proc/self/ns/pid").st_ino
        except OSError:
            _pid_ns = 0
    return _pid_ns


# --- sending -------------------------------------------------------------------


def piece_size(limit: int, channels: bool) -> int:
    """Data bytes in one piece for a mechanism whose messages hold `limit` bytes."""
    return limit if channels else limit - PIECE_HEADER


def send(
    outlet: Outlet,
    chunks: Iterable[bytes],
    channels: bool,
    *,
    then: tuple[int, int] | None = None,
) -> None:
    """One stream: START, the chunks as pieces, END. If sending stops midway
    (Ctrl-C, a timeout, an error), what waits on the stream's own channel is
    taken back and ABORT is sent where it fits at once, so no receiver waits.

    then: (fd, size): after the chunks, the rest of fd in pieces of up to size
    bytes, read and sent by the outlet's own loop (Outlet.send_pieces, which
    the caller made sure it has; only with channels)."""
    start = Start.new(channels)
    channel = start.channel if channels else None
    if channel is not None:
        outlet.take_all(channel)  # leftovers of an earlier sender with this channel
    sent = [0]  # bytes sent so far, also when sending stops midway
    if then is not None and not _beating():  # never block in C where no alarm beats
        chunks = itertools.chain(chunks, _read_pieces(*then))
        then = None
    outlet.put(start.encode())
    try:
        if channel is None:
            _put_with_headers(outlet.put, chunks, start.id, sent)
        else:
            _put_on_channel(outlet.put, chunks, channel, sent)
            if then is not None:
                _send_natively(outlet, channel, *then, sent)
        outlet.put(control(END, start.id, sent[0]), channel)
    except BaseException:
        _abort(outlet, start, channel, sent[0])
        raise


def _put_on_channel(
    put: Callable[[bytes, int], None], chunks: Iterable[bytes], channel: int, sent: list[int]
) -> None:
    for chunk in chunks:
        if len(chunk) == CONTROL_SIZE and chunk[: len(MAGIC)] == MAGIC:  # bytes or a view
            put(chunk[:1], channel)  # never taken for a control message
            chunk = chunk[1:]
            sent[0] += 1
        put(chunk, channel)
        sent[0] += len(chunk)


def _put_with_headers(
    put: Callable[[bytes], None], chunks: Iterable[bytes], ident: int, sent: list[int]
) -> None:
    header = _PIECE.pack
    for seq, chunk in enumerate(chunks):
        put(header(PIECE, ident, seq & 0xFFFFFFFF) + chunk)
        sent[0] += len(chunk)


def _beating() -> bool:
    """Whether the loop's heartbeat runs (started here if need be): it ends every
    blocking C call within HEARTBEAT, so no Ctrl-C is ever lost. False off the
    main thread or outside waits_in_loop."""
    from ipctool.waiting import heartbeat_started

    return heartbeat_started()


def _read_pieces(fd: int, size: int) -> Iterable[bytes]:
    from ipctool.streams import iter_pieces

    return itertools.chain.from_iterable(iter_pieces(size, fd))


def _send_natively(outlet: Outlet, channel: int, fd: int, size: int, sent: list[int]) -> None:
    """The rest of fd, read and sent in the outlet's loop, which returns for
    Python to act: a Ctrl-C (raised as the deferral ends, after the count), a
    read error, or a piece it did not send, sent here by put() (which waits,
    times out or fails as usual) or escaped (one that looks like a control
    message)."""
    from ipctool.streams import stdin_error
    from ipctool.waiting import interrupts_deferred

    send_pieces = outlet.send_pieces  # type: ignore[attr-defined]
    deferred = interrupts_deferred()
    while True:
        _beating()  # a wait in put() may have stopped it
        with deferred:
            count, eof, error, rest = send_pieces(fd, channel, size, MAGIC, CONTROL_SIZE)
            sent[0] += count
        if rest is not None:
            _put_on_channel(outlet.put, (rest,), channel, sent)
        elif error and error != errno.EINTR:
            raise stdin_error(error)
        if eof:
            return


def _abort(outlet: Outlet, start: Start, channel: int | None, sent: int) -> None:
    try:
        if channel is not None:
            outlet.take_all(channel)
        outlet.try_put(control(ABORT, start.id, sent), channel)
    except Exception:  # the stream is broken either way; the receiver sees the sender gone
        pass


# --- receiving -----------------------------------------------------------------


class StreamBroken(IpcError):
    """The stream being written cannot be finished (exit 1)."""


@dataclass
class _Skipped:
    """Messages skipped before a stream began."""

    count: int = 0
    size: int = 0

    def add(self, data: bytes) -> None:
        self.count += 1
        self.size += len(data)

    def report(self, warn: Callable[[str], None]) -> None:
        if self.count:
            some = f"{self.count} message{'s' * (self.count != 1)} ({self.size} bytes)"
            warn(f"skipped {some} that did not belong to a stream's start: leftovers?")
            self.count = self.size = 0


def receive(
    inbox: Inbox,
    writer: RecordWriter,
    *,
    nowait: bool,
    timeout: float | None,
    warn: Callable[[str], None],
) -> None:
    """recv --stream: the first whole stream that comes, to stdout."""
    skipped = _Skipped()
    try:
        _receive(inbox, writer, nowait, timeout, warn, skipped)
    except BaseException:
        with contextlib.suppress(Exception):
            writer.flush()  # what was taken before the failure (or Ctrl-C) still goes out
        raise
    finally:
        skipped.report(warn)
    writer.flush()


def _receive(
    inbox: Inbox,
    writer: RecordWriter,
    nowait: bool,
    timeout: float | None,
    warn: Callable[[str], None],
    skipped: _Skipped,
) -> None:
    pending: Message | None = None
    while True:
        message = pending or _next(inbox, None, nowait, timeout, what="no stream")
        pending = None
        start = parse_start(message[0])
        if start is None:
            skipped.add(message[0])
            continue
        skipped.report(warn)
        if start.sender_alive():
            _follow(inbox, writer, start, nowait, timeout)
            return
        written, pending = _finished_or_skipped(inbox, writer, start, warn)
        if written:
            return


def _next(
    inbox: Inbox, channel: int | None, nowait: bool, timeout: float | None, what: str
) -> Message:
    """The next message on `channel`, waiting for it as the user asked."""
    poll, empty = inbox.poller(channel)
    while True:
        try:
            return poll()
        except empty:
            pass
        except Exception as exc:
            if not inbox.recover(exc):
                raise inbox.translate(exc) from None
            poll, empty = inbox.poller(channel)
            continue
        if nowait:
            raise WouldBlock(inbox.label, what)
        try:
            return inbox.wait(channel, timeout)
        except IpcError:
            raise
        except Exception as exc:
            if not inbox.recover(exc):
                raise inbox.translate(exc) from None


def _finished_or_skipped(
    inbox: Inbox, writer: RecordWriter, start: Start, warn: Callable[[str], None]
) -> tuple[bool, Message | None]:
    """A stream whose sender is gone: all it sent is in the object now. Written
    whole (True), or skipped with a warning (False, and the START of another
    stream if one came in its place, to be read next)."""
    channel = start.channel if start.channel >= 0 else None
    poll, empty = inbox.poller(channel)
    pieces: list[bytes] = []
    size, seq, after = 0, 0, None
    while True:
        try:
            message = poll()
        except empty:
            break
        except Exception as exc:
            raise inbox.translate(exc) from None
        kind, data = _classify(message[0], start, channel, seq)
        if kind == "piece":
            pieces.append(data)
            size += len(data)
            seq += 1
            continue
        if kind == "end" and _count(message[0]) == size:
            for piece in pieces:
                writer.write_raw(piece)
            return True, None
        if kind == "foreign" and parse_start(message[0]):
            after = message
        break
    warn(
        f"skipped an unfinished stream ({size} bytes) from pid {start.pid}, "
        "which stopped midway and is gone"
    )
    return False, after


def _follow(
    inbox: Inbox, writer: RecordWriter, start: Start, nowait: bool, timeout: float | None
) -> None:
    """Write a stream whose sender runs, piece by piece, until its END."""
    from ipctool.waiting import interrupts_deferred

    channel = start.channel if start.channel >= 0 else None
    receive_pieces = getattr(inbox, "receive_pieces", None)
    if channel is not None and receive_pieces is not None and (nowait or _beating()):
        _follow_natively(inbox, receive_pieces, writer, start, nowait, timeout)
        return
    poll, empty = inbox.poller(channel)
    data_of = _piece_data(start, channel)
    write = writer.write_raw
    written, seq = 0, 0
    idle_until = None if timeout is None else time.monotonic() + timeout
    looked_after_exit = False
    deferred = interrupts_deferred()  # a piece taken from the kernel is written first
    while True:
        with deferred:
            message, drained, before = None, False, seq
            try:  # the pieces waiting now, a bounded number under one deferral
                for _ in itertools.repeat(None, PIECES_AT_ONCE):
                    message = poll()
                    data = data_of(message[0], seq)
                    if data is None:
                        break
                    write(data)
                    written += len(data)
                    seq += 1
                    message = None
            except empty:
                drained = True
            except Exception as exc:
                if not inbox.recover(exc):
                    raise inbox.translate(exc) from None
                poll, empty = inbox.poller(channel)
                continue
            if message is None and not drained:
                continue  # PIECES_AT_ONCE taken: a Ctrl-C held meanwhile acts now
            if seq != before and idle_until is not None:
                idle_until = time.monotonic() + timeout  # type: ignore[operator]
            if message is None and not nowait and not looked_after_exit:
                writer.flush()  # the reader gets all that came before any wait
                message = _wait_a_while(inbox, channel, idle_until, timeout)
                data = None if message is None else data_of(message[0], seq)
                if data is not None:
                    write(data)
                    written += len(data)
                    seq += 1
                    message = None
                    if idle_until is not None:
                        idle_until = time.monotonic() + timeout  # type: ignore[operator]
            if message is not None:
                kind, _ = _classify(message[0], start, channel, seq)
                _end_or_break(inbox, start, kind, message[0], written, seq)
                return
            if seq != before:
                continue
        writer.flush()
        if nowait:
            raise WouldBlock(inbox.label, f"the stream is not complete ({written} bytes so far)")
        if looked_after_exit:
            raise StreamBroken(
                inbox.label,
                f"the sender (pid {start.pid}) is gone: the stream stopped after {written} bytes",
            )
        if not start.sender_alive():
            looked_after_exit = True  # one more look: pieces sent just before it ended


PIECES_AT_ONCE = 64  # pieces taken under one Ctrl-C deferral: a bound keeps Ctrl-C prompt


# What Inbox.receive_pieces returns: written, pieces, control, stop, write_error.
PiecesTaken = tuple[int, int, bytes | None, BaseException | None, OSError | None]


def _follow_natively(
    inbox: Inbox,
    receive_pieces: Callable[..., PiecesTaken],
    writer: RecordWriter,
    start: Start,
    nowait: bool,
    timeout: float | None,
) -> None:
    """_follow, with the pieces taken and written in the inbox's own loop
    (Inbox.receive_pieces), which writes every piece it takes before it returns.
    Python looks when it does: after a signal ended its wait (Ctrl-C, raised as
    the deferral ends; the heartbeat, for --timeout, stdout's reader and the
    sender), at a control message, or at an error."""
    from ipctool.streams import stdout_error
    from ipctool.waiting import Deadline, interrupts_deferred

    writer.flush()  # nothing may wait in the writer's buffer: C writes to its fd
    channel, fd = start.channel, writer.fd
    empty = inbox.poller(channel)[1]
    idle, look_at = Deadline(timeout), time.monotonic() + HEARTBEAT
    written, seq, gone = 0, 0, False
    deferred = interrupts_deferred()
    while True:
        block = not (nowait or gone)
        if block:
            _beating()  # a wait of another kind in this loop may have stopped it
        with deferred:  # counted before a Ctrl-C acts
            count, pieces, message, stop, failed = receive_pieces(
                channel, fd, block, MAGIC, CONTROL_SIZE
            )
            written, seq = written + count, seq + pieces
        if failed is not None:
            raise stdout_error(failed) from None
        if message is not None:
            kind, _ = _classify(message, start, channel, seq)
            _end_or_break(inbox, start, kind, message, written, seq)
            return
        if pieces:
            idle.restart()
            look_at = time.monotonic() + HEARTBEAT
        elif stop is not None and _waited(inbox, start, stop, empty, nowait, written):
            _while_waiting(inbox, idle)
            if time.monotonic() >= look_at:
                gone = not start.sender_alive()  # then one more look: pieces sent before
                look_at = time.monotonic() + HEARTBEAT


def _waited(
    inbox: Inbox,
    start: Start,
    stop: BaseException,
    empty: type[BaseException] | tuple[type[BaseException], ...],
    nowait: bool,
    written: int,
) -> bool:
    """Why the inbox's loop stopped with no piece: True if a signal ended its
    wait; False if it may go on (the inbox recovered); else an error."""
    if isinstance(stop, InterruptedError):
        return True
    if isinstance(stop, empty):  # not waiting: --nowait, or the sender is gone
        if nowait:
            raise WouldBlock(inbox.label, f"the stream is not complete ({written} bytes so far)")
        raise StreamBroken(
            inbox.label,
            f"the sender (pid {start.pid}) is gone: the stream stopped after {written} bytes",
        )
    if not inbox.recover(stop):
        raise inbox.translate(stop) from None
    return False


def _while_waiting(inbox: Inbox, idle: Deadline) -> None:
    """What a wait in C, ended by the heartbeat, looks at as wait_for does: the
    idle --timeout, and whether stdout's reader went away (a quiet 141)."""
    from ipctool.errors import StdoutClosed
    from ipctool.waiting import stdout_is_pipe, stdout_reader_gone

    if idle.expired():
        raise idle.error(inbox.label)
    if stdout_is_pipe() and stdout_reader_gone():
        raise StdoutClosed(errno.EPIPE, "stdout: reader went away")


def _piece_data(start: Start, channel: int | None) -> Callable[[bytes, int], bytes | None]:
    """What _classify says of a piece, fast: its data, or None for anything else
    (which _classify then names)."""
    if channel is not None:

        def on_channel(data: bytes, seq: int) -> bytes | None:
            if len(data) == CONTROL_SIZE and data.startswith(MAGIC):
                return None
            return data

        return on_channel
    prefix = _PIECE_PREFIX.pack(PIECE, start.id)

    def with_header(data: bytes, seq: int) -> bytes | None:
        if (
            data.startswith(prefix)
            and len(data) >= PIECE_HEADER
            and _SEQ.unpack_from(data, _PIECE_PREFIX.size)[0] == seq & 0xFFFFFFFF
        ):
            return data[PIECE_HEADER:]
        return None

    return with_header


def _wait_a_while(
    inbox: Inbox, channel: int | None, idle_until: float | None, timeout: float | None
) -> Message | None:
    """A message, or None after HEARTBEAT seconds (to look at the sender); Timeout
    once the user's --timeout has passed without a piece."""
    wait_for = HEARTBEAT
    if idle_until is not None:
        left = idle_until - time.monotonic()
        if left <= 0:
            raise Timeout(inbox.label, f"timed out after {timeout:g} s")
        wait_for = min(wait_for, left)
    try:
        return inbox.wait(channel, wait_for)
    except Timeout:
        return None
    except IpcError:
        raise
    except Exception as exc:
        if not inbox.recover(exc):
            raise inbox.translate(exc) from None
        return None


def _classify(data: bytes, start: Start, channel: int | None, seq: int) -> tuple[str, bytes]:
    """What a message on the stream's way is: ("piece", data), ("end" | "abort" |
    "foreign" | "gap", b"")."""
    if channel is not None:
        parsed = parse_control(data)
        if parsed is None:
            return "piece", data
        kind, ident, _ = parsed
    else:
        if data[:1] == PIECE and len(data) >= PIECE_HEADER:
            _, ident, number = _PIECE.unpack_from(data)
            if ident != start.id:
                return "foreign", b""
            if number != seq & 0xFFFFFFFF:
                return "gap", b""
            return "piece", data[PIECE_HEADER:]
        parsed = parse_control(data)
        if parsed is None:
            return "foreign", b""
        kind, ident, _ = parsed
    if ident != start.id:
        return "foreign", b""
    return {END: "end", ABORT: "abort"}.get(kind, "foreign"), b""


def _count(data: bytes) -> int:
    parsed = parse_control(data)
    return parsed[2][0] if parsed else -1


def _end_or_break(
    inbox: Inbox, start: Start, kind: str, data: bytes, written: int, seq: int
) -> None:
    """Return at a good END; raise StreamBroken for everything else."""
    who = f"the sender (pid {start.pid})"
    if kind == "end" and _count(data) == written:
        return
    if kind == "end":
        reason = f"{who} sent {_count(data)} bytes, {written} arrived: pieces are missing"
    elif kind == "abort":
        reason = f"{who} stopped the stream after {written} bytes"
    elif kind == "gap":
        reason = (
            f"piece {seq} of the stream is missing after {written} bytes "
            "(taken by another receiver?)"
        )
    else:
        reason = (
            f"another stream's message came after {written} bytes: "
            "two streams on one object at once"
        )
    raise StreamBroken(inbox.label, reason)
