"""Unix socket targets: a PATH (a socket file) or @NAME (the abstract namespace).

- parse(): the target as an address, checked before anything is touched
  (exit 2): not empty, no NUL, at most 107 bytes (sun_path, with its NUL).
- connectable(): what send may connect to: a socket file (a symbolic link is
  followed only where fs.protected_symlinks would follow it), or @NAME.
- SocketFile: what recv binds. A new socket file is made with --mode exactly
  (0600), removed at the end unless --keep, and only while the path still
  names it. In the way: a path that is not a socket (a file, a directory, a
  symbolic link) is refused untouched (exit 2); a live socket is never
  replaced (exit 6); a stale one (nothing listens: connect is refused) is
  reported with a hint (exit 6), or replaced with --force.
- liveness(): whether a socket file has a socket bound to it: the kernel's
  table first (nothing is disturbed), then a connect probe for what the table
  cannot see (a listener in another network namespace).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Any

from ipctool.api import NotFound, Refused, UsageError, from_os_error

MAX_NAME = 107  # sun_path holds 108 bytes; a path needs its NUL, an abstract name its leading one
LIVE, STALE, UNKNOWN = "live", "stale", "unknown"


class UnixAddress:
    """A parsed target: `label` as given (error lines, the ready line), `sockaddr`
    for bind and connect, and `path` for a socket file (None for @NAME)."""

    __slots__ = ("label", "path", "sockaddr")

    def __init__(self, label: str, sockaddr: str | bytes, path: str | None) -> None:
        self.label = label
        self.sockaddr = sockaddr
        self.path = path

    @property
    def abstract(self) -> bool:
        return self.path is None


def parse(text: str) -> UnixAddress:
    if not text:
        raise UsageError(None, "name a socket: a PATH, or @NAME in the abstract namespace")
    if "\0" in text:
        raise UsageError(text, "a socket name cannot hold a NUL byte")
    raw = os.fsencode(text)
    if text.startswith("@"):
        if len(raw) == 1:
            raise UsageError(text, "an abstract name is not empty: @NAME")
        if len(raw) - 1 > MAX_NAME:
            raise UsageError(text, f"an abstract name has at most {MAX_NAME} bytes")
        return UnixAddress(text, b"\0" + raw[1:], None)
    if len(raw) > MAX_NAME:
        raise UsageError(
            text,
            f"a socket path has at most {MAX_NAME} bytes, this one {len(raw)}: "
            "use a shorter one, or a relative path from its directory",
        )
    return UnixAddress(text, text, text)


def kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a socket"


def not_a_socket(path: str, mode: int) -> UsageError:
    return UsageError(path, f"is {kind_of(mode)}, not a socket; left untouched")


def lstat(path: str) -> os.stat_result | None:
    """What is at the path (None: nothing), errors as one line."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise from_os_error(path, err) from None


def connectable(address: UnixAddress) -> None:
    """send's check: a socket is at the path (or it is @NAME). A symbolic link
    (/dev/log is one) is followed, except where fs.protected_symlinks would not:
    in a sticky, world-writable directory, owned by neither us nor it."""
    path = address.path
    if path is None:
        return
    st = lstat(path)
    if st is None:
        raise NotFound(path, "no such socket")
    if stat.S_ISLNK(st.st_mode):
        check_link(path, st)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise NotFound(path, "a symbolic link to nothing: no such socket") from None
        except OSError as err:
            raise from_os_error(path, err) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError(path, f"is {kind_of(st.st_mode)}, not a socket")


def check_link(path: str, st: os.stat_result) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    try:
        directory = os.stat(parent)
    except OSError:
        return
    shared = directory.st_mode & stat.S_ISVTX and directory.st_mode & stat.S_IWOTH
    if shared and st.st_uid not in (os.geteuid(), directory.st_uid):
        raise UsageError(
            path,
            "a symbolic link in a shared sticky directory, owned by another user; "
            "not followed (as fs.protected_symlinks)",
        )


def liveness(path: str, st: os.stat_result, table: Any = None) -> tuple[str, str]:
    """(LIVE, STALE or UNKNOWN, why) for the socket file `st` at `path`.

    The kernel's table first: a socket bound to the file (a listener, even one
    that has not called listen() yet, which a probe would take for stale) is
    found without touching it. What the table cannot see (its network
    namespace's sockets only; /proc/net/unix matches by name) is probed with a
    connect of each type: refused means nothing is bound there. A probe that
    connects opens a connection the listener sees come and go at once."""
    from ipctool_plugins.unix import diag

    table = table or diag.table()
    found = table.bound_to_file(st.st_dev, st.st_ino) if table.detailed else table.named(path)
    if any(diag.binds(s) for s in found):
        return LIVE, "a socket is bound to it"
    return probe(path)


def probe(path: str) -> tuple[str, str]:
    """Connect to the socket file with each type; never sends anything."""
    import socket

    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_SEQPACKET):
        with socket.socket(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC) as s:
            try:
                s.connect(path)
            except BlockingIOError:  # a listener whose queue is full: alive
                return LIVE, "a listener answers (its queue is full)"
            except OSError as err:
                if err.errno == errno.EPROTOTYPE:
                    continue  # bound, but another type: try that
                if err.errno == errno.ECONNREFUSED:
                    return STALE, "nothing listens on it (connect is refused)"
                return UNKNOWN, f"cannot probe it: {(err.strerror or str(err)).lower()}"
            return LIVE, "a listener answers a connect (in another network namespace?)"
    return UNKNOWN, "no socket type connects to it"


class SocketFile:
    """The name recv binds to: a socket file it makes and removes, or @NAME."""

    def __init__(self, address: UnixAddress, mode: int, keep: bool, force: bool) -> None:
        self.address = address
        self.mode = mode
        self.keep = keep
        self.force = force
        self.made: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we made

    def clear_way(self) -> None:
        """Refuse what is in the way of bind, or with --force take a stale socket file away."""
        path = self.address.path
        if path is None:
            return
        st = lstat(path)
        if st is None:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise not_a_socket(path, st.st_mode)
        state, why = liveness(path, st)
        if state != STALE:
            raise Refused(path, f"a socket file in use ({why}); not replaced")
        if not self.force:
            raise Refused(
                path,
                f"a stale socket file: {why}; --force replaces it "
                "(or `ipctool unix clean PATH` removes it)",
            )
        with contextlib.suppress(FileNotFoundError):
            if same_file(os.lstat(path), st):
                os.unlink(path)

    def bind(self, sock: Any) -> None:
        """Bind, making the socket file with exactly --mode (whatever the umask)."""
        path = self.address.path
        umask = os.umask(0o777 & ~self.mode) if path is not None else None
        try:
            sock.bind(self.address.sockaddr)
        except OSError as err:
            raise self.bind_error(err) from None
        finally:
            if umask is not None:
                os.umask(umask)
        if path is not None:
            st = os.lstat(path)
            self.made = (st.st_dev, st.st_ino)

    def bind_error(self, err: OSError) -> Exception:
        label = self.address.label
        if err.errno == errno.EADDRINUSE:
            if self.address.abstract:
                return Refused(label, "the abstract name is in use by another socket")
            return Refused(label, "something appeared at the path meanwhile; not replaced")
        if err.errno == errno.ENOENT:
            return NotFound(label, "no such directory")
        return from_os_error(label, err)

    def remove(self) -> None:
        """Unlink the socket file we made, unless --keep or something else is there now."""
        if self.made is None or self.keep or self.address.path is None:
            return
        made, self.made = self.made, None
        with contextlib.suppress(OSError):
            st = os.lstat(self.address.path)
            if stat.S_ISSOCK(st.st_mode) and (st.st_dev, st.st_ino) == made:
                os.unlink(self.address.path)


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
