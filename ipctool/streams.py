"""Exact-bytes stdin and stdout, and the framings every message mechanism shares.

Framings (send splits stdin, recv joins messages back):
  whole   all of stdin is one message; recv writes each message as it is
  lines   one message per line, without its newline; recv adds a newline
  null    one message per NUL-terminated record (find -print0); recv adds a NUL
  stream  stdin of any size as a start, maximum-size pieces and an end
          (ipctool/stream_protocol.py); recv writes one whole stream
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Iterator
from enum import Enum
from typing import Any

from ipctool.errors import UsageError, from_os_error

READ_CHUNK = 1 << 16
STDIN, STDOUT = 0, 1
STDIN_DIRECTORY_ENV = "IPCTOOL_STDIN_DIRECTORY"


class Framing(str, Enum):
    WHOLE = "whole"
    LINES = "lines"
    NULL = "null"
    STREAM = "stream"

    @property
    def separator(self) -> bytes:
        return {Framing.LINES: b"\n", Framing.NULL: b"\0"}.get(self, b"")


def framing_from_flags(lines: bool = False, null: bool = False, stream: bool = False) -> Framing:
    chosen = [
        f
        for f, on in ((Framing.LINES, lines), (Framing.NULL, null), (Framing.STREAM, stream))
        if on
    ]
    if len(chosen) > 1:
        raise UsageError(None, "choose one of --lines, --null and --stream")
    return chosen[0] if chosen else Framing.WHOLE


def _stdin_is_a_directory() -> bool:
    """The launcher (bin/ipctool) found a directory as stdin, which Python cannot
    start with, and put /dev/null in its place (asked once: reads are hot)."""
    global _STDIN_DIRECTORY
    if _STDIN_DIRECTORY is None:
        _STDIN_DIRECTORY = bool(os.environ.get(STDIN_DIRECTORY_ENV))
    return _STDIN_DIRECTORY


_STDIN_DIRECTORY: bool | None = None


def _read(fd: int, size: int) -> bytes:
    if fd == STDIN and _stdin_is_a_directory():
        raise from_os_error("stdin", IsADirectoryError(errno.EISDIR, "Is a directory"))
    try:
        return os.read(fd, size)
    except OSError as err:  # e.g. stdin closed (<&-): name it in the error line
        raise from_os_error("stdin", err) from None


def require_stdio(fd: int) -> None:
    """stdin (0) or stdout (1) can be used: called by a streaming verb before it
    makes or opens anything, so a closed stream or a directory as stdin (which the
    launcher replaced by /dev/null) changes nothing and sends no empty stream."""
    if fd == STDIN and _stdin_is_a_directory():
        raise from_os_error("stdin", IsADirectoryError(errno.EISDIR, "Is a directory"))
    try:
        os.fstat(fd)
    except OSError as err:  # closed (<&- or >&-)
        raise from_os_error("stdin" if fd == STDIN else "stdout", err) from None


def stdin_error(code: int) -> BaseException:
    """A failed read of stdin (errno `code`), named as _read names it."""
    return from_os_error("stdin", OSError(code, os.strerror(code)))


def read_all(fd: int = STDIN, limit: int | None = None) -> bytes:
    """All of stdin, exactly (for the whole framing).

    With a limit, reading stops once more than `limit` bytes came: the caller
    refuses an oversized message without holding (or waiting for) the rest.
    """
    parts, size = [], 0
    while chunk := _read(fd, READ_CHUNK):
        parts.append(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            break
    return b"".join(parts)


def iter_record_batches(
    separator: bytes, fd: int = STDIN, limit: int | None = None
) -> Iterator[list[bytes]]:
    """Records of stdin without their separator, a batch per read, as soon as each
    is complete (a batch per read keeps the per-record cost to a list step).

    A last record with no separator comes too; an empty stdin gives none. An
    unfinished record is kept as the pieces it came in, and each read is searched
    once, so a long record costs linear time; once it passes `limit`, Oversized
    is raised without reading the rest (stdin may never end: /dev/zero).
    """
    tail: list[bytes] = []  # the unfinished record
    tail_size = 0
    yielded = False
    while chunk := _read(fd, READ_CHUNK):
        records = chunk.split(separator)
        if len(records) == 1:  # no separator: the unfinished record grows
            tail.append(chunk)
            tail_size += len(chunk)
            if limit is not None and tail_size > limit:
                raise Oversized(tail_size, cut=True, first=not yielded)
            continue
        if tail:
            tail.append(records[0])
            records[0] = b"".join(tail)
        last = records.pop()
        tail, tail_size = ([last], len(last)) if last else ([], 0)
        yielded = True
        yield records
    if tail:
        yield [b"".join(tail)]


def iter_pieces(size: int, fd: int = STDIN) -> Iterator[list[bytes]]:
    """stdin cut in pieces of at most `size` bytes, none of them empty (for
    stream), a batch per read.

    A read takes up to READ_CHUNK bytes (a pipe gives what it holds, without
    waiting for more) and the pieces are views into it: no copy per piece, and
    one system call for many. (Typed as bytes: a memoryview slice is what every
    send takes, and no receiver of a piece relies on more than the buffer.)"""
    read_size = max(size, READ_CHUNK // size * size)
    while chunk := _read(fd, read_size):
        if len(chunk) <= size:
            yield [chunk]
            continue
        view = memoryview(chunk)
        yield [view[at : at + size] for at in range(0, len(chunk), size)]  # type: ignore[misc]


class Oversized(Exception):
    """A message or record over the limit: what send must refuse.

    cut: reading stopped once it passed the limit (size is a lower bound).
    first: nothing was read before it, so nothing has been sent.
    """

    def __init__(self, size: int, *, cut: bool = False, first: bool = True) -> None:
        super().__init__(size)
        self.size, self.cut, self.first = size, cut, first


def stdin_batches(
    framing: Framing, data: bytes | None, max_size: int, fd: int = STDIN
) -> Iterator[list[bytes]]:
    """What send transmits, in batches of messages. `data` (--data) replaces stdin.

    A message or record over max_size raises Oversized once the ones before it
    have been yielded. The whole framing reads at most max_size + 1 bytes.
    """
    if framing is Framing.WHOLE:
        whole = read_all(fd, limit=max_size) if data is None else data
        if len(whole) > max_size:
            raise Oversized(len(whole), cut=data is None)
        yield [whole]
    elif framing is Framing.STREAM:
        if data is None:
            yield from iter_pieces(max_size, fd)
        else:
            yield [data[i : i + max_size] for i in range(0, len(data), max_size)]
    else:
        yield from _checked(_record_batches(framing, data, max_size, fd), max_size)


def _record_batches(
    framing: Framing, data: bytes | None, max_size: int, fd: int
) -> Iterator[list[bytes]]:
    if data is None:
        yield from iter_record_batches(framing.separator, fd, limit=max_size)
        return
    records = data.split(framing.separator)
    if records[-1] == b"":
        records.pop()
    yield records


def _checked(batches: Iterator[list[bytes]], max_size: int) -> Iterator[list[bytes]]:
    """The batches up to the first record over max_size, then Oversized for it."""
    first = True
    for batch in batches:
        if batch and max(map(len, batch)) > max_size:  # one pass in C, per batch
            cut = next(i for i, record in enumerate(batch) if len(record) > max_size)
            if cut:
                yield batch[:cut]
            raise Oversized(len(batch[cut]), first=first and not cut)
        first = first and not batch
        yield batch


def stdin_records(framing: Framing, data: bytes | None, max_size: int) -> Iterator[bytes]:
    """What send transmits, one message at a time (see stdin_batches)."""
    for batch in stdin_batches(framing, data, max_size):
        yield from batch


class WriteFailed(Exception):
    """Writing to stdout failed: `error` says why, `unwritten` are the messages of
    the batch that did not get out whole (or that the reader left unread)."""

    def __init__(self, error: OSError, unwritten: list[tuple[bytes, Any]]) -> None:
        super().__init__(error)
        self.error, self.unwritten = error, unwritten


RAW_BUFFER = 1 << 16
RAW_PIECES = 256  # and at most this many pieces a write (IOV_MAX is 1024)


class RecordWriter:
    """Writes received messages to stdout in a framing, a batch in one write.

    Writes go straight to fd 1: no buffer holds a message that has left the
    kernel, so a failed write knows exactly which messages did not get out
    (WriteFailed), and recv can put them back.

    When stdout is a pipe, its reader may leave at any time and take with it
    what it has not read. recv then takes one message at a time and, before
    taking the next, waits until the reader has read the pipe empty
    (wait_read); the pipe is shrunk to one page, so that poll() says exactly
    that. If the reader leaves instead, what it left unread is known (FIONREAD
    on our end still counts it) and goes back.
    """

    def __init__(
        self,
        framing: Framing,
        cstring: bool = False,
        fd: int = STDOUT,
        *,
        as_json: bool = False,
        meta_key: str | None = None,
    ) -> None:
        try:
            mode = os.fstat(fd).st_mode
        except OSError as err:  # stdout closed (>&-)
            raise stdout_error(err) from None
        self.fd = fd
        self.terminator = framing.separator
        self.cstring = cstring
        self.as_json, self.meta_key = as_json, meta_key or "meta"
        self.pipe = stat.S_ISFIFO(mode)
        self.one_page: bool | None = None  # shrunk on the first wait_read()
        self.last: list[tuple[bytes, Any]] = []  # the last batch, until it has been read
        self.poller: Any = None
        self.raw: list[bytes] = []  # stream pieces not written yet (write_raw)
        self.raw_size = 0

    def cut(self, message: bytes) -> bytes:
        """The message as --cstring shows it: up to its first NUL."""
        return message.split(b"\0", 1)[0] if self.cstring else message

    def framed(self, messages: list[tuple[bytes, Any]]) -> list[bytes]:
        """Each (data, meta) message as it goes to stdout."""
        if self.as_json:
            from ipctool.output import data_fields, json_line

            key = self.meta_key
            return [json_line({key: m[1], **data_fields(self.cut(m[0]))}) for m in messages]
        return [self.cut(m[0]) + self.terminator for m in messages]

    def write_messages(self, messages: list[tuple[bytes, Any]]) -> None:
        """Several messages in one write, each framed; WriteFailed if it fails."""
        if self.as_json or self.cstring:
            data = b"".join(self.framed(messages))
        else:  # the common case without a copy per message
            bodies = [m[0] for m in messages]
            if self.terminator:
                bodies.append(b"")  # join puts a terminator after every body
            data = self.terminator.join(bodies)
        done = self._write(data)
        if done < len(data):
            raise WriteFailed(self.error, self._after(messages, done))
        self.last = messages

    def _write(self, data: bytes) -> int:
        """Write all of data; how much went out (less when self.error says why)."""
        done, size = 0, len(data)
        view = memoryview(data)
        while done < size:
            try:
                done += os.write(self.fd, view[done:])
            except OSError as err:
                self.error = err
                break
        return done

    def _after(self, messages: list[tuple[bytes, Any]], done: int) -> list[tuple[bytes, Any]]:
        """The messages not wholly written when `done` bytes of them were."""
        end = 0
        for i, framed in enumerate(self.framed(messages)):
            end += len(framed)
            if end > done:
                return messages[i:]
        return []

    def write_raw(self, data: bytes) -> None:
        """Bytes as they are (stream pieces), gathered up to RAW_BUFFER bytes a
        write; flush() before waiting. A stream that fails to get out is broken
        whatever is done, so here a buffer costs nothing and saves many writes.
        The pieces are kept as they came and go out in one writev: no copy."""
        self.raw.append(data)
        self.raw_size += len(data)
        if self.raw_size >= RAW_BUFFER or len(self.raw) >= RAW_PIECES:
            self.flush()

    def flush(self) -> None:
        if not self.raw:
            return
        pieces, size = self.raw, self.raw_size
        self.raw, self.raw_size = [], 0
        try:
            done = os.writev(self.fd, pieces)
        except OSError as err:
            self.error, done = err, -1
        if 0 <= done < size:  # a short write (a signal, a full disk): the rest as usual
            rest = b"".join(pieces)[done:]
            done = self._write(rest) + (size - len(rest))
        if done < size:
            raise stdout_error(self.error) from None

    def wait_read(self) -> None:
        """For a pipe: return once its reader has read all that was written. If the
        reader has left instead, raise WriteFailed with the messages it left unread."""
        import select

        if self.poller is None:
            self.one_page = _shrink_pipe(self.fd)
            self.poller = select.poll()
            self.poller.register(self.fd, select.POLLOUT)
        while True:
            events = self.poller.poll()[0][1]  # a Ctrl-C ends the wait (KeyboardInterrupt)
            if events & (select.POLLERR | select.POLLHUP):
                unread = self._before(_unread(self.fd))
                raise WriteFailed(BrokenPipeError(errno.EPIPE, "broken pipe"), unread)
            if self.one_page or not _unread(self.fd):
                return
            time.sleep(0.001)  # the pipe kept its size: POLLOUT says only "not full"

    def _before(self, unread: int) -> list[tuple[bytes, Any]]:
        """The messages of the last batch that the `unread` bytes at the end belong to."""
        if unread <= 0:
            return []
        framed, tail = self.framed(self.last), 0
        for i in range(len(framed) - 1, -1, -1):
            tail += len(framed[i])
            if tail >= unread:
                return self.last[i:]
        return self.last


def _shrink_pipe(fd: int) -> bool:
    """Make the pipe one page, so that poll() says POLLOUT only once it is empty."""
    import fcntl

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, os.sysconf("SC_PAGE_SIZE"))
    except OSError:  # e.g. EBUSY: more than a page waits in it now
        return False
    return True


def _unread(fd: int) -> int:
    """Bytes in the pipe that its reader has not read (FIONREAD works on our end)."""
    import array
    import fcntl
    import termios

    count = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


def stdout_error(err: OSError) -> BaseException:
    """A closed pipe stays BrokenPipeError (a quiet exit); others name stdout."""
    return err if isinstance(err, BrokenPipeError) else from_os_error("stdout", err)
