"""Parsing of the ways objects are named, shared by every plugin.

Each parser raises UsageError (exit 2) before anything is touched. A value is
taken only when all of its text matches (fullmatch): int() and float() would
also take surrounding spaces and newlines, "+5" and "1_000".
"""

from __future__ import annotations

import os
import re

from ipctool.errors import UsageError

KEY_MAX = 0xFFFFFFFF  # key_t is 32 bits; ipcs shows keys as unsigned hex
NAME_MAX = 255
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_INTEGER = re.compile(r"0[xX][0-9a-fA-F]+|[0-9]+")  # decimal or 0x-hex: keys and ids
_OCTAL = re.compile(r"[0-7]+")
_SECONDS = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?", re.IGNORECASE)
TIMEOUT_MAX = 10**8  # seconds (three years): longer waits are "no timeout"
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_sysv_key(text: str) -> int:
    """A SysV IPC key: decimal or 0x-hex, 1..0xffffffff (0 is IPC_PRIVATE, reachable by --id)."""
    if not _INTEGER.fullmatch(text):
        raise UsageError(text, "not a key (decimal or 0x-hex) or /name")
    key = _integer(text)
    if key < 0 or key > KEY_MAX:
        raise UsageError(text, f"key out of range (1 to {KEY_MAX:#x})")
    if key == 0:
        raise UsageError(text, "key 0 is IPC_PRIVATE; address such objects with --id")
    return key


def _integer(text: str) -> int:
    """Decimal or 0x-hex text that _INTEGER matched."""
    return int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)


def signed_key(key: int) -> int:
    """The key as the signed key_t that C and sysv_ipc use."""
    return key - (1 << 32) if key > 0x7FFFFFFF else key


def format_key(key: int) -> str:
    """A key as ipcs shows it: 0x and eight hex digits."""
    return f"0x{key & KEY_MAX:08x}"


def parse_posix_name(text: str) -> str:
    """A POSIX IPC name: "/" and 1-255 characters, with no further slash."""
    if not text.startswith("/"):
        raise UsageError(text, "a POSIX name starts with /")
    rest = text[1:]
    if not rest:
        raise UsageError(text, "a POSIX name needs characters after /")
    if "/" in rest:
        raise UsageError(text, "a POSIX name has no / after the first")
    if rest in (".", ".."):
        raise UsageError(text, "a POSIX name cannot be . or ..")
    try:
        size = len(rest.encode("utf-8"))
    except UnicodeEncodeError:  # undecodable bytes from the command line
        raise UsageError(text, "a POSIX name must be valid UTF-8") from None
    if size > NAME_MAX or "\0" in rest:
        raise UsageError(text, f"a POSIX name is 1 to {NAME_MAX} bytes with no NUL")
    return text


def parse_timeout(text: str) -> float | None:
    """--timeout SECONDS: a non-negative number; "inf" or more than TIMEOUT_MAX waits forever."""
    if not _SECONDS.fullmatch(text):  # no sign, so never negative; no nan
        raise UsageError(text, "a timeout is a non-negative number of seconds")
    seconds = float(text)
    return None if seconds > TIMEOUT_MAX else seconds


def parse_id(text: str) -> int:
    """An id as ipcs shows it: decimal (or 0x-hex), 0 to 2**31 - 1."""
    if not _INTEGER.fullmatch(text):
        raise UsageError(text, "an id is a non-negative integer")
    value = _integer(text)
    if value > 0x7FFFFFFF:
        raise UsageError(text, "an id is a non-negative 31-bit integer")
    return value


def parse_duration(text: str) -> float:
    """Seconds from "90", "90s", "15m", "2h" or "7d"."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise UsageError(text, "a duration is a number with an optional unit s, m, h or d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_mode(text: str) -> int:
    """Permission bits in octal, as chmod takes them (0600, 644)."""
    if not _OCTAL.fullmatch(text):
        raise UsageError(text, "a mode is octal permission bits such as 0600")
    mode = int(text, 8)
    if mode > 0o777:
        raise UsageError(text, "a mode is octal permission bits from 0 to 0777")
    return mode


def parse_fd(text: str) -> int:
    """A file descriptor this process has open for writing, 3 or more (for --ready-fd
    N): 0, 1 and 2 carry the data and the diagnostics, which a ready line would spoil."""
    import fcntl

    if not text.isdigit():
        raise UsageError(text, "a file descriptor is a non-negative integer")
    fd = int(text)
    if fd < 3:
        raise UsageError(text, "the ready fd must be 3 or more (0-2 are stdin, stdout, stderr)")
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except (OSError, OverflowError):
        raise UsageError(text, "not an open file descriptor") from None
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise UsageError(text, "the ready fd is open for reading only")
    return fd


class IpcTarget:
    """A SysV or POSIX object as the user named it: exactly one of key, id or name."""

    __slots__ = ("id", "key", "name")

    def __init__(self, key: int | None = None, id: int | None = None, name: str | None = None):
        self.key, self.id, self.name = key, id, name

    @property
    def posix(self) -> bool:
        return self.name is not None

    @property
    def label(self) -> str:
        """How errors name it: /name, 0x00003039, or id 7."""
        if self.name is not None:
            return self.name
        return format_key(self.key) if self.key is not None else f"id {self.id}"


ID_PREFIX = "--id="  # the target form inspect prints for an object only an id reaches


def parse_ipc_target(text: str | None, object_id: int | None = None) -> IpcTarget:
    """The grammar msgq, shm and sem share: KEY (decimal or 0x-hex), /NAME, or an id
    given as `--id N` (the option) or `--id=N` (one argument, as inspect prints it)."""
    if text is not None and object_id is not None:
        raise UsageError(text, "give a KEY, a /NAME or --id, not two of them")
    if object_id is not None:
        return IpcTarget(id=object_id)
    if text is None:
        raise UsageError(None, "name an object: KEY, /NAME or --id ID")
    if text.startswith(ID_PREFIX):
        return IpcTarget(id=parse_id(text[len(ID_PREFIX) :]))
    if text.startswith("/"):
        return IpcTarget(name=parse_posix_name(text))
    return IpcTarget(key=parse_sysv_key(text))
