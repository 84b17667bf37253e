"""Exit codes and the errors a verb raises to end with one line on stderr."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import IntEnum
from typing import Any


def say(line: str) -> None:
    """A diagnostic line to fd 2, unbuffered, and never an error of its own: with
    stderr closed or full (`2>&-`, `2>/dev/full`) the exit code must still be the
    one the line explains (a buffered sys.stderr would fail at exit, and Python
    would turn any code into 120)."""
    try:
        data = (line + "\n").encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        data = (line + "\n").encode("utf-8", "backslashreplace")
    try:
        while data:
            data = data[os.write(2, data) :]
    except OSError:
        pass


class ExitCode(IntEnum):
    """Documented in README.md ("Exit codes"); scripts rely on these values."""

    OK = 0
    FAILURE = 1  # any other failure, including a plugin conflict
    USAGE = 2  # bad target or option: nothing was touched
    NOT_FOUND = 3
    PERMISSION = 4
    WOULD_BLOCK = 5  # --nowait and the operation would have to wait
    REFUSED = 6  # clean: in use or not yours, and no --force
    TOO_LARGE = 7  # data does not fit the object's limit
    TIMEOUT = 124  # as timeout(1)
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
    BROKEN_PIPE = 141  # downstream reader went away (128 + SIGPIPE), said quietly


class IpcError(Exception):
    """An expected failure: reported as `ipctool: MECHANISM: OBJECT: REASON`."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, obj: str | None, reason: str) -> None:
        super().__init__(reason)
        self.obj = obj
        self.reason = reason

    def line(self, mechanism: str | None) -> str:
        """The error line, always one line: see printable()."""
        parts = ["ipctool", mechanism, self.obj, self.reason]
        return ": ".join(printable(p) for p in parts if p)


_ESCAPES: dict[int, str] = {}
_BACKSLASH = {ord("\\"): "\\\\"}


def printable(text: str, backslashes: bool = True) -> str:
    """Text for an error line: control characters as Python escapes (\\n, \\x1b).

    A target is whatever was typed: a newline in it would split the one error
    line, and an escape sequence would reach the terminal raw. Backslashes are
    doubled so that an escape is never ambiguous (not in click's messages,
    which escape on their own), and bytes that were not UTF-8 on the command
    line show as \\xNN.
    """
    if not _ESCAPES:
        controls = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
        _ESCAPES.update({c: repr(chr(c))[1:-1] for c in controls})
        _ESCAPES.update({c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)})
    if backslashes:  # first, so that the escapes added below stay single
        text = text.translate(_BACKSLASH)
    return text.translate(_ESCAPES)


class UsageError(IpcError):
    exit_code = ExitCode.USAGE


class NotFound(IpcError):
    exit_code = ExitCode.NOT_FOUND


class PermissionDenied(IpcError):
    exit_code = ExitCode.PERMISSION


class WouldBlock(IpcError):
    exit_code = ExitCode.WOULD_BLOCK


class Refused(IpcError):
    exit_code = ExitCode.REFUSED


class TooLarge(IpcError):
    exit_code = ExitCode.TOO_LARGE


class Timeout(IpcError):
    exit_code = ExitCode.TIMEOUT


def describe(exc: BaseException) -> str:
    """An unexpected exception in one line: its type and the first line of its text."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StdoutClosed(BrokenPipeError):
    """Our own stdout's reader went away: a quiet exit 141, never an error line.

    A peer that closed or reset (a FIFO's reader, a socket's other end) is a
    different thing: an error naming that peer. Code that knows a broken pipe is
    stdout's raises this, so `naming()` and the core never confuse the two.
    """


# errno -> the error class whose exit code a script can act on. Documented in
# README ("Exit codes"); tests/test_errors.py holds every row to its code.
_BY_ERRNO: dict[str, type[IpcError]] = {
    # 3, not found: nothing is there to talk to. A refused connection and a FIFO
    # without a reader (ENXIO) are "nobody there (yet)": a script retries them.
    "ENOENT": NotFound,
    "ENXIO": NotFound,
    "ECONNREFUSED": NotFound,
    "ESRCH": NotFound,
    # A host or network with no route to it (tcp, udp): nobody there to talk to
    # either, and as worth a retry (a link coming up, a host booting).
    "EHOSTUNREACH": NotFound,
    "ENETUNREACH": NotFound,
    "ENETDOWN": NotFound,
    # 4, permission denied.
    "EACCES": PermissionDenied,
    "EPERM": PermissionDenied,
    "EROFS": PermissionDenied,
    # 2, usage: the path or address given cannot name such an object at all;
    # the kernel refused it before anything was made.
    "EISDIR": UsageError,
    "ENOTDIR": UsageError,
    "ELOOP": UsageError,
    "ENAMETOOLONG": UsageError,
    "EADDRNOTAVAIL": UsageError,
    "EPROTOTYPE": UsageError,  # a socket of another type (unix: stream, dgram, seqpacket)
    # 6, refused: the object exists and is someone else's business (in use,
    # or already there); --force or another name is the script's choice.
    "EADDRINUSE": Refused,
    "EBUSY": Refused,
    "EEXIST": Refused,
    "EAGAIN": WouldBlock,  # 5
    "ETIMEDOUT": Timeout,  # 124
    "EMSGSIZE": TooLarge,  # 7
    "EFBIG": TooLarge,
    # EPIPE and ECONNRESET stay 1: a peer went away mid-transfer. Our own
    # stdout's reader going away is StdoutClosed (141) and never comes here.
}

_REASONS: dict[str, str] = {
    "EPIPE": "the other end was closed",
    "ECONNRESET": "connection reset by peer",
    "ECONNREFUSED": "connection refused: nothing is listening",
    "EHOSTUNREACH": "host unreachable: no route to it",
    "ENETUNREACH": "network unreachable: no route to it",
    "ENETDOWN": "network is down",
}


def _errno_table() -> tuple[dict[int, type[IpcError]], dict[int, str]]:
    import errno

    def numbered(table: dict[str, Any]) -> dict[int, Any]:
        return {getattr(errno, name): value for name, value in table.items()}

    return numbered(_BY_ERRNO), numbered(_REASONS)


def from_os_error(obj: str | None, err: OSError, reason: str | None = None) -> IpcError:
    """Map an OSError to the IpcError whose exit code a script can act on.

    `reason` replaces the kernel's wording (e.g. "reader closed the FIFO" for EPIPE).
    """
    by_errno, reasons = _errno_table()
    code = err.errno or 0
    if reason is None:
        reason = reasons.get(code) or (err.strerror or str(err)).lower()
    return by_errno.get(code, IpcError)(obj, reason)


Translate = Callable[[Exception], "BaseException | None"]


@contextmanager
def naming(
    obj: str | None,
    *,
    reasons: Mapping[int, str] | None = None,
    translate: Translate | None = None,
) -> Iterator[None]:
    """Errors inside the block become one-line IpcErrors that name `obj`.

    An OSError is mapped by errno (from_os_error); `reasons` gives better
    words for some errnos (`{errno.EPIPE: "reader closed the FIFO"}`).
    `translate(exc)` is the hook for a library's own exceptions: it returns
    the error to raise instead, or None to leave `exc` to the errno map (if
    an OSError) or as it is. IpcErrors, StdoutClosed and KeyboardInterrupt
    pass through untouched, so keep writes to stdout either outside the block
    or raising StdoutClosed: a plain BrokenPipeError inside is the object's.
    """
    try:
        yield
    except (IpcError, StdoutClosed):
        raise
    except Exception as err:
        mapped = translate(err) if translate is not None else None
        if mapped is not None and mapped is not err:
            raise mapped from err
        if isinstance(err, OSError):
            reason = reasons.get(err.errno or 0) if reasons else None
            raise from_os_error(obj, err, reason) from err
        raise
