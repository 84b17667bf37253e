"""A byte stream from any descriptor to any other, as fast as the kernel moves it.

`relay(src, dst, ...)` is send's and recv's loop for every stream mechanism
(FIFOs, unix and TCP sockets, pipes of other processes): stdin to the object,
or the object to stdout. The way bytes move depends on what the two ends are:

- splice(2) when either end is a pipe or FIFO: the kernel moves pages, no
  copy through Python (pipes are grown to /proc/sys/fs/pipe-max-size first);
- sendfile(2) when the source is a regular file (to a socket, a file...);
- splice(2) through a pipe of our own when neither end is a pipe (a socket to
  a file, /dev/null or another socket): the bytes never enter Python;
- read into one reused buffer and write it out, for the rest (a terminal).

A combination the kernel refuses (EINVAL before anything moved: a tty, a file
opened O_APPEND) falls back to the next way. Waits go through wait_fds, so an
idle --timeout, Ctrl-C and a closed stdout are honoured while nothing moves.
The end is the first read of 0 bytes (EOF). A FIFO opened for reading before
any writer reads as EOF at once: wait_fd(fd, POLLIN) for its first byte first.

Errors are told apart by which end they come from: EPIPE or ECONNRESET on our
own stdout is StdoutClosed (a quiet 141); on the object it is an error line
naming it ("reader closed the FIFO", exit 1); stdin's errors name stdin.

A `Backflow` moves the other way at the same time, for a connection's replies:
`relay(0, sock, backflow=Backflow(sock, 1))` sends stdin while it prints what
the peer answers meanwhile, so a peer that echoes (and stops reading while its
answer waits) never deadlocks the sender.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
from collections.abc import Callable

from ipctool.errors import IpcError, StdoutClosed, from_os_error
from ipctool.streams import require_stdio
from ipctool.waiting import Deadline, wait_fds

CHUNK = 1 << 20
STDIN, STDOUT = 0, 1
PIPE_MAX_SIZE = "/proc/sys/fs/pipe-max-size"
# Errors a write reports (the destination's); anything else in splice or sendfile
# comes from the source.
_WRITE_ERRNOS = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ENOSPC, errno.EFBIG}
_GONE_ERRNOS = {errno.EPIPE, errno.ECONNRESET}
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP}
_HANGUP = select.POLLERR | select.POLLHUP
_ALWAYS = _HANGUP | select.POLLNVAL  # poll reports these whatever was asked


class _Unsupported(Exception):
    """The kernel will not move bytes between these two ends this way."""


class _End:
    """One end of a relay: its fd, what kind of file it is, and its name in errors."""

    def __init__(self, fd: int, name: str | None) -> None:
        self.fd = fd
        self.name = name
        if fd == STDIN:
            require_stdio(fd)  # a directory the launcher replaced reads as EOF: refuse it
        try:
            mode = os.fstat(fd).st_mode
        except OSError as err:  # e.g. stdin closed (<&-)
            raise from_os_error(name, err) from None
        self.pipe = stat.S_ISFIFO(mode)
        self.file = stat.S_ISREG(mode)
        self.socket = stat.S_ISSOCK(mode)
        self.tty = not (self.pipe or self.file or self.socket) and os.isatty(fd)

    @property
    def can_hang_up(self) -> bool:
        """A pipe or socket reports its peer going away (POLLERR/POLLHUP)."""
        return self.pipe or self.socket


def relay(
    src: int,
    dst: int,
    *,
    idle_timeout: float | None = None,
    obj: str | None = None,
    watch_stdout: bool = False,
    peer_gone: str | None = None,
    backflow: Backflow | None = None,
) -> int:
    """Move everything from `src` to `dst` until EOF; returns the bytes moved.

    `obj` names the object end(s) in error lines and in the Timeout raised
    after `idle_timeout` seconds without a byte moving; fd 0 is "stdin" and
    fd 1 "stdout". `peer_gone` is the reason when the object's peer goes away
    (EPIPE, ECONNRESET, or a hangup seen while waiting), e.g. "reader closed
    the FIFO". With watch_stdout, a stdout pipe that is not one of the ends is
    watched too (its reader going away ends the relay with StdoutClosed).
    `backflow` moves the opposite direction whenever the relay would wait (see
    Backflow); its progress counts against the idle timeout too.
    """
    moving = _Relay(src, dst, idle_timeout, obj, watch_stdout, peer_gone, backflow)
    # Not a @contextmanager: a Ctrl-C landing as its with-block ends is raised
    # before the generator resumes, which then runs its clean-up only when
    # collected, after the descriptors were closed (a traceback on stderr).
    try:
        moving.prepare()
        return moving.run()
    finally:
        moving.put_back()


class _Relay:
    def __init__(
        self,
        src: int,
        dst: int,
        idle_timeout: float | None,
        obj: str | None,
        watch_stdout: bool,
        peer_gone: str | None,
        backflow: Backflow | None = None,
    ) -> None:
        self.src = _End(src, "stdin" if src == STDIN else obj)
        self.dst = _End(dst, "stdout" if dst == STDOUT else obj)
        self.deadline = Deadline(idle_timeout)
        self.backflow = backflow
        self.obj = obj
        self.watch_stdout = watch_stdout
        self.peer_gone = peer_gone
        self.moved = 0
        self.chunk = CHUNK
        self.restore: list[tuple[int, int]] = []  # (fd, flags) to put back at the end

    # --- setting up and putting back ---------------------------------------------

    def prepare(self) -> None:
        """Large pipe buffers; O_NONBLOCK where waits need it (put_back undoes it).

        Pipes need no O_NONBLOCK for splice (SPLICE_F_NONBLOCK covers them),
        files never block, and a terminal is shared with the shell, so only
        sockets (and pipes on the copying path) are switched.
        """
        for end in (self.src, self.dst):
            if end.pipe:
                self.chunk = max(self.chunk, _grow_pipe(end.fd))
        for end in (self.src, self.dst):
            if end.socket:
                self._set_nonblocking(end.fd)

    def _set_nonblocking(self, fd: int) -> None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        self.restore.append((fd, flags))  # first: a Ctrl-C right after the switch is covered
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)

    def put_back(self) -> None:
        for fd, flags in self.restore:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)

    def run(self) -> int:
        ways: list[Callable[[], int]] = []
        if self.src.pipe or self.dst.pipe:
            ways.append(self.splice)
        if self.src.file:
            ways.append(self.sendfile)
        if not (self.src.pipe or self.dst.pipe or self.src.tty or self.dst.tty):
            ways.append(self.splice_through_pipe)
        ways.append(self.copy)
        for way in ways:
            try:
                return way()
            except _Unsupported:
                continue
        raise AssertionError("copy is always supported")  # pragma: no cover

    # --- the three ways --------------------------------------------------------

    def splice(self) -> int:
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        src, dst, chunk = self.src.fd, self.dst.fd, self.chunk
        while True:
            if self.src.tty:  # blocking: a splice would wait in the kernel holding the
                self._wait_readable()  # other end's pipe lock, deaf to --timeout
            try:
                n = os.splice(src, dst, chunk, flags=flags)
            except BlockingIOError:
                self._wait_for_either()
                continue
            except OSError as err:
                if self.moved == 0 and err.errno in _UNSUPPORTED:
                    raise _Unsupported from err
                if err.errno == errno.EPIPE and self.src.pipe and _drained(src):
                    return self.moved  # all was moved: the reader left after it
                raise self._error(err, self._splice_side(err)) from None
            if not n:
                return self.moved
            self._progress(n)

    def sendfile(self) -> int:
        src, dst, chunk = self.src.fd, self.dst.fd, self.chunk
        while True:
            try:
                n = os.sendfile(dst, src, None, chunk)
            except BlockingIOError:
                self._wait_writable()
                continue
            except OSError as err:
                if self.moved == 0 and err.errno in _UNSUPPORTED:
                    raise _Unsupported from err
                side = self.dst if err.errno in _WRITE_ERRNOS else self.src
                raise self._error(err, side) from None
            if not n:
                return self.moved
            self._progress(n)

    def splice_through_pipe(self) -> int:
        """Neither end is a pipe: splice into a pipe of our own and out of it.

        What one splice took from the source is spliced out before a Ctrl-C acts
        (as copy() writes what it read). Should the destination refuse splice
        after the first bytes came in, they are written out of the pipe and the
        rest goes by copy()."""
        from ipctool.interrupts import interrupts_deferred

        inner, outer = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            chunk = max(self.chunk, _grow_pipe(outer))
            flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
            while True:
                with interrupts_deferred():
                    n = self._splice_in(outer, chunk, flags)
                    if n:
                        self._splice_out(inner, n, flags)
                if n is None:
                    self._wait_readable()
                    continue
                if not n:
                    return self.moved
        finally:
            os.close(inner)
            os.close(outer)

    def _splice_in(self, pipe: int, chunk: int, flags: int) -> int | None:
        """Bytes spliced from the source into our pipe (0 at EOF; None: none yet)."""
        try:
            return os.splice(self.src.fd, pipe, chunk, flags=flags)
        except BlockingIOError:
            return None
        except OSError as err:
            if self.moved == 0 and err.errno in _UNSUPPORTED:
                raise _Unsupported from err
            raise self._error(err, self.src) from None

    def _splice_out(self, pipe: int, n: int, flags: int) -> None:
        while n:
            try:
                done = os.splice(pipe, self.dst.fd, n, flags=flags)
            except BlockingIOError:
                self._wait_writable()
                continue
            except OSError as err:
                if self.moved == 0 and err.errno in _UNSUPPORTED:
                    self._drain(pipe, n)
                    raise _Unsupported from err
                raise self._error(err, self.dst) from None
            n -= done
            self._progress(done)

    def _drain(self, pipe: int, n: int) -> None:
        """Write out the n bytes our pipe holds, the destination refusing splice."""
        buffer = bytearray(n)
        got = os.readv(pipe, [buffer])
        self._write_all(memoryview(buffer), got)
        self._progress(got)

    def copy(self) -> int:
        """read into one reused buffer, write it out (partial writes resumed)."""
        for end in (self.src, self.dst):
            if end.pipe:  # splice refused them: waits now need O_NONBLOCK here too
                self._set_nonblocking(end.fd)
        from ipctool.interrupts import interrupts_deferred

        buffer = bytearray(self.chunk)
        view = memoryview(buffer)
        while True:
            if self.src.tty:  # blocking, shared with the shell: wait, then read
                self._wait_readable()
            # What a read took from the source is written before a Ctrl-C acts
            # (a wait for the destination inside still ends at once).
            with interrupts_deferred():
                n = self._read_into(buffer)
                if n:
                    self._write_all(view, n)
            if n is None:
                self._wait_readable()
                continue
            if not n:
                return self.moved
            self._progress(n)

    def _read_into(self, buffer: bytearray) -> int | None:
        """Bytes read into the buffer (0 at EOF), or None when none are there yet."""
        try:
            return os.readv(self.src.fd, [buffer])
        except BlockingIOError:
            return None
        except OSError as err:
            raise self._error(err, self.src) from None

    def _write_all(self, view: memoryview, n: int) -> None:
        done = 0
        while done < n:
            # A terminal is blocking: wait until it takes bytes, but not when it
            # does now (that wait would end on the Ctrl-C and drop what was read).
            if self.dst.tty and not _ready_now(self.dst.fd, select.POLLOUT):
                self._wait_writable()
            try:
                done += os.write(self.dst.fd, view[done:n])
            except BlockingIOError:
                self._wait_writable()
            except OSError as err:
                raise self._error(err, self.dst) from None

    # --- waiting and errors ----------------------------------------------------

    def _progress(self, n: int) -> None:
        self.moved += n
        self.deadline.restart()  # the timeout is for idleness

    def _wait_readable(self) -> None:
        """Until the source has data or EOF; meanwhile the destination's peer
        going away ends the relay at once, not at the next write."""
        watched = [(self.src.fd, select.POLLIN)]
        if self.dst.can_hang_up:
            watched.append((self.dst.fd, 0))
        revents = self._wait(watched)
        if len(revents) > 1 and revents[1] & _HANGUP:
            raise self._gone(self.dst)

    def _wait_writable(self) -> None:
        """Until the destination takes more (or has failed: the write then says how)."""
        self._wait([(self.dst.fd, select.POLLOUT)])

    def _wait(self, watched: list[tuple[int, int]]) -> list[int]:
        """wait_fds on `watched`, moving the backflow whenever it can meanwhile;
        returns once one of `watched` is ready (their revents). One fd may be in
        both (a connection's socket): poll takes it once, with both its events."""
        back = self.backflow
        while True:
            extra = back.watched() if back is not None else []
            merged: dict[int, int] = {}
            for fd, events in watched + extra:
                merged[fd] = merged.get(fd, 0) | events
            ready = dict(
                zip(
                    merged,
                    wait_fds(
                        list(merged.items()),
                        timeout=self.deadline,
                        obj=self.obj,
                        watch_stdout=self.watch_stdout,
                    ),
                    strict=True,
                )
            )
            woke = back is not None and any(ready[fd] & (ev | _ALWAYS) for fd, ev in extra)
            if woke and back is not None and back.step():
                self.deadline.restart()
            mine = [ready[fd] & (events | _ALWAYS) for fd, events in watched]
            if any(mine):
                return mine

    def _wait_for_either(self) -> None:
        """splice said EAGAIN: the source is empty, or the destination full."""
        poller = select.poll()
        poller.register(self.src.fd, select.POLLIN)
        if poller.poll(0):
            self._wait_writable()
        else:
            self._wait_readable()

    def _splice_side(self, err: OSError) -> _End:
        if err.errno == errno.ECONNRESET:  # only a socket resets, and one end is a pipe
            return self.src if self.src.socket else self.dst
        return self.dst if err.errno in _WRITE_ERRNOS else self.src

    def _gone(self, end: _End) -> BaseException:
        return self._error(OSError(errno.EPIPE, os.strerror(errno.EPIPE)), end)

    def _error(self, err: OSError, end: _End) -> BaseException:
        if end.fd == STDOUT and err.errno in _GONE_ERRNOS:
            return StdoutClosed(errno.EPIPE, "stdout: reader went away")
        peer = end.fd not in (STDIN, STDOUT)
        reason = self.peer_gone if peer and err.errno in _GONE_ERRNOS else None
        mapped: IpcError = from_os_error(end.name, err, reason)
        return mapped


def _drained(pipe: int) -> bool:
    """A source pipe at its end: empty, and no writer left. The kernel checks the
    destination's reader before the source's end, so the splice that would have
    said EOF says EPIPE when the reader left right after taking everything."""
    poller = select.poll()
    poller.register(pipe, select.POLLIN)
    events = dict(poller.poll(0)).get(pipe, 0)
    return bool(events & select.POLLHUP) and not events & select.POLLIN


def _ready_now(fd: int, events: int) -> bool:
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(0))


def _grow_pipe(fd: int) -> int:
    """Grow a pipe's buffer to the system's maximum (fewer, larger moves); its size."""
    from ipctool.system import read_sysctl

    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, read_sysctl(PIPE_MAX_SIZE, CHUNK))
    except OSError as err:  # EPERM: over this user's pipe quota; EBUSY: holds more already
        if err.errno not in (errno.EPERM, errno.EBUSY):
            raise
    return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)


class Backflow:
    """The other direction of a connection, moved while a relay waits for its own.

    `relay(0, sock, backflow=Backflow(sock, 1, obj))` sends stdin to the peer
    and meanwhile writes what the peer sends back (its replies) to stdout, or
    drops it when `dst` is None. Each step moves only what can move without
    waiting; a peer that answers while it is being sent to (an echo server,
    which stops reading while its answer waits) then never deadlocks the
    sender. `done` once the peer has sent all it will (its end of data): the
    caller relays what is left after its own direction ends, if not done.
    """

    def __init__(self, src: int, dst: int | None, obj: str | None = None) -> None:
        self.src = src
        self.dst = dst
        self.obj = obj
        self.done = False
        self.dst_full = False  # stdout took nothing more at the last step
        self.pipe = dst is not None and _End(dst, "stdout").pipe
        self.buffer: bytearray | None = None

    def watched(self) -> list[tuple[int, int]]:
        if self.done:
            return []
        if self.dst_full and self.dst is not None:
            return [(self.dst, select.POLLOUT)]
        return [(self.src, select.POLLIN)]

    def step(self) -> bool:
        """Move what can move now; whether anything did (or the end came)."""
        try:
            moved = self._splice() if self.pipe else self._copy()
        except OSError as err:
            raise self._error(err) from None
        if moved == 0:
            self.done = True
            return True
        return moved is not None and moved > 0

    def _splice(self) -> int | None:
        """Into a stdout pipe; None when the peer has nothing or stdout is full."""
        assert self.dst is not None
        flags = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK
        total = 0
        while True:
            try:
                n = os.splice(self.src, self.dst, CHUNK, flags=flags)
            except BlockingIOError:
                self.dst_full = _ready_now(self.src, select.POLLIN)
                return total or None
            self.dst_full = False
            if not n:
                return total or 0
            total += n

    def _copy(self) -> int | None:
        """Read what the peer sent, write it out whole (or drop it)."""
        from ipctool.interrupts import interrupts_deferred

        if self.buffer is None:
            self.buffer = bytearray(CHUNK)
        with interrupts_deferred():  # what was read is written before a Ctrl-C acts
            try:
                n = os.readv(self.src, [self.buffer])
            except BlockingIOError:
                return None
            if n and self.dst is not None:
                _write_fully(self.dst, memoryview(self.buffer)[:n])
        return n

    def _error(self, err: OSError) -> BaseException:
        if isinstance(err, StdoutClosed):
            return err
        if err.errno == errno.EPIPE:  # only a write fails so: stdout's reader left
            return StdoutClosed(errno.EPIPE, "stdout: reader went away")
        return from_os_error(self.obj, err)


def _write_fully(fd: int, view: memoryview) -> None:
    """Write all of view to fd (stdout), waiting while it is full; EPIPE is stdout's."""
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            wait_fds([(fd, select.POLLOUT)], timeout=None, obj="stdout")
        except BrokenPipeError:
            raise StdoutClosed(errno.EPIPE, "stdout: reader went away") from None
