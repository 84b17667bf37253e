"""fifo send and recv: byte streams through a named pipe, by path.

inspect and clean are the core's, from objects.FifoSource.

No `from __future__ import annotations` here: typer reads these annotations.
"""

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ipctool.api import (
    DEFAULT_MODE,
    Data,
    Mode,
    NotFound,
    Nowait,
    ReadyFd,
    TimeoutOption,
    UsageError,
    WouldBlock,
    announce_ready,
    from_os_error,
    new_app,
    relay,
    require_stdio,
    retry_until,
    wait_fd,
)

app = new_app(
    help="""FIFOs (named pipes) by PATH: send copies stdin in, recv copies it out.

Either end creates a missing FIFO (mode 0600, or --mode) and removes it when its
transfer ends, unless --keep; a FIFO ipctool did not create is never removed. A path
that exists and is not a FIFO (a file, a directory, a socket, a symbolic link) is
refused and left untouched. --timeout covers waiting for the other end and idle time.""",
    epilog="""\b
Examples:
  ipctool fifo recv /tmp/jobs.fifo > out &
  tar c dir | ipctool fifo send /tmp/jobs.fifo
  ipctool fifo inspect --json""",
)

Path = Annotated[str, typer.Argument(metavar="PATH", help="The FIFO's path.")]
Keep = Annotated[
    bool, typer.Option("--keep", help="Keep a FIFO this command created (default: remove it).")
]
POLLIN, POLLOUT, POLLHUP = 0x001, 0x004, 0x010


class Fifo:
    """A FIFO at a path, opened without following a symbolic link; removed at the
    end only if this command created it and the path still holds that FIFO."""

    def __init__(self, path: str, mode: int, keep: bool) -> None:
        if not path:
            raise UsageError(None, "name a FIFO's path")
        self.path = path
        self.mode = mode
        self.keep = keep
        self.created = False  # this command made the FIFO (so it may remove it)
        # An O_PATH descriptor on the FIFO for as long as the command runs: it keeps
        # the inode from being freed and its number given to a file put at the
        # path meanwhile (so that file is never taken for ours and removed), and it
        # shows in /proc, so clean sees the FIFO in use while we wait for a peer.
        self.anchor: int | None = None

    def prepare(self) -> None:
        """Check what is at the path; create a FIFO there if nothing is; hold it."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            self._create()
            return
        except OSError as err:
            raise self.error(err) from None
        if not stat.S_ISFIFO(st.st_mode):
            from ipctool_plugins.fifo.objects import kind_of

            raise UsageError(self.path, f"exists and is not a FIFO ({kind_of(st.st_mode)})")
        self._hold()

    def _hold(self) -> None:
        try:
            self.anchor = os.open(self.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            raise self.error(err) from None
        if not stat.S_ISFIFO(os.fstat(self.anchor).st_mode):  # swapped since lstat
            raise UsageError(self.path, "is no longer a FIFO")

    def same_fifo(self, st: os.stat_result) -> bool:
        assert self.anchor is not None
        held = os.fstat(self.anchor)
        return stat.S_ISFIFO(st.st_mode) and (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)

    def _create(self) -> None:
        umask = os.umask(0)  # --mode means exactly that mode
        try:
            os.mkfifo(self.path, self.mode)
        except FileExistsError:  # the other end made it first
            os.umask(umask)
            self.prepare()
            return
        except OSError as err:
            os.umask(umask)
            if err.errno == errno.ENOENT:
                raise NotFound(self.path, "no such directory") from None
            raise self.error(err) from None
        os.umask(umask)
        self.created = True
        self._hold()

    def open(self, flags: int) -> int | None:
        """A non-blocking descriptor, or None while a writer finds no reader (ENXIO)."""
        try:
            fd = os.open(self.path, flags | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            if err.errno == errno.ENXIO:
                return None
            raise self.error(err) from None
        if not self.same_fifo(os.fstat(fd)):  # swapped after prepare() looked
            os.close(fd)
            raise UsageError(self.path, "is no longer the FIFO it was")
        return fd

    def error(self, err: OSError) -> Exception:
        if err.errno == errno.ELOOP:
            return UsageError(self.path, "exists and is not a FIFO (a symbolic link)")
        return from_os_error(self.path, err)

    def remove_if_ours(self) -> None:
        """Unlink the FIFO if we made it and the path still names it; let it go."""
        if self.anchor is None:
            return
        try:
            if self.created and not self.keep and self.same_fifo(os.lstat(self.path)):
                os.unlink(self.path)
        except OSError:
            pass  # gone already (the lecture's reader unlinks it): nothing to do
        # Not in a finally: cut short by a Ctrl-C, the hold stays for the retry.
        anchor, self.anchor = self.anchor, None
        os.close(anchor)


@contextmanager
def fifo_at(path: str, mode: int, keep: bool) -> Iterator[Fifo]:
    fifo = Fifo(path, mode, keep)
    fifo.prepare()
    try:
        yield fifo
    finally:  # Ctrl-C, timeout and errors too: leave nothing we made behind
        try:
            fifo.remove_if_ours()
        except BaseException:  # a Ctrl-C (or SIGTERM) landed in it: finish, then act
            fifo.remove_if_ours()
            raise


@app.command()
def send(
    path: Path,
    data: Data = None,
    timeout: TimeoutOption = None,
    mode: Mode = DEFAULT_MODE,
    keep: Keep = False,
    ready_fd: ReadyFd = None,
) -> None:
    """Copy stdin (or --data) into the FIFO; wait for a reader to open it first.

    A reader that goes away mid-stream ends send with an error naming the FIFO.

    \b
    Examples:
      tar c dir | ipctool fifo send /tmp/jobs.fifo
      ipctool fifo send /tmp/x.fifo --timeout 5 < data.bin
      ipctool fifo send /tmp/x.fifo --data 'hello'
    """
    if data is None:
        require_stdio(0)  # before anything is made: a closed stdin has no data
    with fifo_at(path, mode, keep) as fifo:
        announce_ready(fifo.path, ready_fd)
        fd = retry_until(lambda: fifo.open(os.O_WRONLY), timeout=timeout, obj=path)
        try:
            if data is None:
                relay(0, fd, idle_timeout=timeout, obj=path, peer_gone=READER_GONE)
            else:
                write_data(fd, os.fsencode(data), path, timeout)
        finally:
            os.close(fd)


READER_GONE = "the reader closed the FIFO"


def write_data(fd: int, data: bytes, path: str, timeout: float | None) -> None:
    """--data into the FIFO (non-blocking: each wait for room honours --timeout)."""
    from ipctool.api import IpcError

    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            wait_fd(fd, POLLOUT, timeout=timeout, obj=path)
        except BrokenPipeError:
            raise IpcError(path, READER_GONE) from None


@app.command()
def recv(
    path: Path,
    timeout: TimeoutOption = None,
    nowait: Nowait = False,
    mode: Mode = DEFAULT_MODE,
    keep: Keep = False,
    ready_fd: ReadyFd = None,
) -> None:
    """Copy what is written into the FIFO to stdout, until the writer closes it.

    Waits for a writer to open it first; --nowait exits 5 if none has it open.

    \b
    Examples:
      ipctool fifo recv /tmp/jobs.fifo > out
      ipctool fifo recv /tmp/jobs.fifo --timeout 10 | tar x
    """
    require_stdio(1)  # before anything is made: nowhere to write to
    with fifo_at(path, mode, keep) as fifo:
        fd = fifo.open(os.O_RDONLY)
        assert fd is not None  # a reader's open never waits
        try:
            announce_ready(fifo.path, ready_fd)
            if nowait and not has_writer(fd):
                raise WouldBlock(path, "no writer has the FIFO open")
            # Before any writer came, read() says EOF: wait for one (data or hang-up).
            wait_fd(fd, POLLIN, timeout=timeout, obj=path, watch_stdout=True)
            relay(fd, 1, idle_timeout=timeout, obj=path)
        finally:
            os.close(fd)


def has_writer(fd: int) -> bool:
    """Whether a writer has the FIFO open (or data waits). With nothing waiting, a
    non-blocking read says EAGAIN while a writer is there and EOF when none is;
    unlike a look at /proc, this also sees other users' writers."""
    if bytes_waiting(fd) > 0:
        return True
    try:
        os.read(fd, 1)
    except BlockingIOError:
        return True
    return False  # EOF: no writer (nothing was waiting, so nothing was taken)


def bytes_waiting(fd: int) -> int:
    import array
    import fcntl
    import termios

    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]
