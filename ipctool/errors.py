"""Exit codes and the errors a verb raises to end with one line on stderr."""

from __future__ import annotations

from enum import IntEnum


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


def from_os_error(obj: str | None, err: OSError) -> IpcError:
    """Map an OSError to the IpcError whose exit code a script can act on."""
    import errno

    reason = err.strerror or str(err)
    by_errno: dict[int, type[IpcError]] = {
        errno.ENOENT: NotFound,
        errno.EACCES: PermissionDenied,
        errno.EPERM: PermissionDenied,
        errno.EAGAIN: WouldBlock,
        errno.ETIMEDOUT: Timeout,
        errno.EMSGSIZE: TooLarge,
    }
    return by_errno.get(err.errno or 0, IpcError)(obj, reason.lower())
