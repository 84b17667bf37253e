"""Waiting under --timeout, Ctrl-C and a closed stdout: on file descriptors, and in C calls.

Every wait here ends in one of four ways: what it waited for happened; the
timeout passed (Timeout, exit 124); Ctrl-C (KeyboardInterrupt, exit 130,
whether or not Ctrl-C is deferred at the time); or, with watch_stdout, stdout
is a pipe whose reader went away (StdoutClosed, a quiet exit 141).

- `wait_fd` / `when_ready`: poll() on the object's descriptor together with
  the signal wakeup pipe (ipctool.interrupts), so a Ctrl-C that lands before or
  during the poll is always seen. No SIGALRM, no race.
- `retry_until`: for what cannot be polled (opening a FIFO for writing before a
  reader exists fails with ENXIO; a connect before the listener): tries again
  with short pauses, each a poll() on the wakeup pipe.
- `wait_for`: a blocking call into a C extension (sysv_ipc) that cannot be
  polled. SIGALRM, installed only for the call and restored after, interrupts
  it for the timeout and as a heartbeat (see `wait_for`).
- `Deadline`: one --timeout over many waits, overall or idle.
"""

from __future__ import annotations

import errno
import math
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from ipctool import interrupts
from ipctool.errors import StdoutClosed, Timeout
from ipctool.interrupts import interrupts_deferred

__all__ = [
    "Deadline",
    "heartbeat_running",
    "heartbeat_started",
    "interrupts_deferred",
    "pause",
    "retry_until",
    "stdout_is_pipe",
    "stdout_reader_gone",
    "wait_fd",
    "wait_fds",
    "wait_for",
    "waits_in_loop",
    "when_ready",
]

T = TypeVar("T")

# wait_for's heartbeat: a Ctrl-C that lands between the last check and the
# moment the C call enters the kernel is acted on within FIRST_BEAT of the
# call's start (where a Ctrl-C right after the previous message lands), and
# within HEARTBEAT of any later re-entry. An idle wait wakes 10 times a second.
FIRST_BEAT = 0.005
HEARTBEAT = 0.1
POLL_MS_MAX = 2**31 - 1
RETRY_FIRST_PAUSE = 0.001
_MAIN_THREAD = threading.main_thread().ident


class Deadline:
    """One timeout shared by many waits.

    Overall: pass the same Deadline to every wait of a loop. Idle: call
    `restart()` whenever something moved, so only a quiet spell of `timeout`
    seconds ends the loop. None waits forever.
    """

    __slots__ = ("at", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.at: float | None = None
        self.restart()

    def restart(self) -> None:
        self.at = None if self.timeout is None else time.monotonic() + self.timeout

    def remaining(self) -> float | None:
        """Seconds left (never below 0), or None for no timeout."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def error(self, obj: str | None) -> Timeout:
        return Timeout(obj, f"timed out after {self.timeout:g} s")

    def poll_ms(self) -> int:
        """The remaining time as poll() takes it: -1 forever, rounded up, capped."""
        left = self.remaining()
        return -1 if left is None else min(math.ceil(left * 1000), POLL_MS_MAX)


def as_deadline(timeout: float | Deadline | None) -> Deadline:
    return timeout if isinstance(timeout, Deadline) else Deadline(timeout)


_stdout_kind: list[bool] = []  # stdout's type does not change while a command runs


def stdout_is_pipe() -> bool:
    if not _stdout_kind:
        try:
            mode = os.fstat(1).st_mode
        except OSError:
            mode = 0
        _stdout_kind.append(stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode))
    return _stdout_kind[0]


def stdout_reader_left() -> bool:
    """Our stdout is a pipe or socket whose reader went away (for a loop that
    waits on something else and must still end quietly, 141, when it has)."""
    return stdout_is_pipe() and stdout_reader_gone()


def stdout_reader_gone() -> bool:
    import select

    poller = select.poll()
    poller.register(1, 0)  # POLLERR and POLLHUP are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def wait_fds(
    watched: Sequence[tuple[int, int]],
    *,
    timeout: float | Deadline | None,
    obj: str | None,
    watch_stdout: bool = False,
) -> list[int]:
    """Until one of the (fd, events) pairs is ready; returns each one's revents.

    POLLERR and POLLHUP are always reported (register events 0 to watch only
    for those). A descriptor that is not open raises OSError(EBADF).
    """
    import select

    deadline = as_deadline(timeout)
    poller = select.poll()
    for fd, events in watched:
        poller.register(fd, events)
    # Signal handlers run in the main thread only: another thread has no Ctrl-C to see.
    wakeup = interrupts.wakeup_fd() if threading.get_ident() == _MAIN_THREAD else -1
    if wakeup >= 0:
        poller.register(wakeup, select.POLLIN)
    fds = [fd for fd, _ in watched]
    watching_stdout = watch_stdout and 1 not in fds and stdout_is_pipe()
    if watching_stdout:
        poller.register(1, 0)
    while True:
        interrupts.raise_if_interrupted()  # recorded while deferred, before this wait
        ready = dict(poller.poll(deadline.poll_ms()))
        if wakeup in ready:
            interrupts.raise_if_signaled()
        if watching_stdout and ready.get(1, 0) & (select.POLLERR | select.POLLHUP):
            raise StdoutClosed(errno.EPIPE, "stdout: reader went away")
        revents = [ready.get(fd, 0) for fd in fds]
        if any(r & select.POLLNVAL for r in revents):
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))  # poll: fd not open
        if any(revents):
            return revents
        if deadline.expired():
            raise deadline.error(obj)


def wait_fd(
    fd: int,
    events: int,
    *,
    timeout: float | Deadline | None,
    obj: str | None,
    watch_stdout: bool = False,
) -> int:
    """Until `fd` is ready for `events` (select.POLLIN, POLLOUT...); returns its revents.

    Raises Timeout (124) once `timeout` (seconds, or a shared Deadline)
    passes, KeyboardInterrupt on Ctrl-C (in the main thread, where signal
    handlers run), and with watch_stdout StdoutClosed when stdout is a pipe
    whose reader went away.
    """
    return wait_fds([(fd, events)], timeout=timeout, obj=obj, watch_stdout=watch_stdout)[0]


def when_ready(
    fd: int,
    events: int,
    attempt: Callable[[], T],
    *,
    busy: type[BaseException] | tuple[type[BaseException], ...],
    timeout: float | Deadline | None,
    obj: str | None,
    watch_stdout: bool = False,
) -> T:
    """attempt() (a non-blocking call), waiting for `fd` whenever it raises `busy`.

    For objects with a pollable descriptor and a library call that does the
    work (a POSIX queue's mq_receive on its mqd): another process may take the
    message between the poll and the call, so `busy` just means wait again.
    """
    deadline = as_deadline(timeout)
    while True:
        try:
            return attempt()
        except busy:
            pass
        wait_fd(fd, events, timeout=deadline, obj=obj, watch_stdout=watch_stdout)


def pause(seconds: float, *, watch_stdout: bool = False) -> None:
    """Sleep, but end at once on Ctrl-C (and, with watch_stdout, a closed stdout)."""
    until = Deadline(seconds)
    try:
        wait_fds([], timeout=until, obj=None, watch_stdout=watch_stdout)
    except Timeout:
        return


def retry_until(
    attempt: Callable[[], T | None],
    *,
    timeout: float | Deadline | None,
    obj: str | None,
    interval: float = 0.05,
    retry_errnos: Collection[int] = (),
    watch_stdout: bool = False,
) -> T:
    """attempt() until it returns something other than None, for what cannot be polled.

    An OSError whose errno is in `retry_errnos` counts as "not yet" too (a
    FIFO opened for writing with O_NONBLOCK fails with ENXIO until a reader
    opens it). Pauses start at 1 ms and double up to `interval`, so a peer
    that is nearly there is met quickly and one that is slow costs little.
    """
    deadline = as_deadline(timeout)
    wait = RETRY_FIRST_PAUSE
    while True:
        interrupts.raise_if_interrupted()
        try:
            result = attempt()
        except OSError as err:
            if err.errno not in retry_errnos:
                raise
            result = None
        if result is not None:
            return result
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise deadline.error(obj)
        pause(wait if left is None else min(wait, left), watch_stdout=watch_stdout)
        wait = min(wait * 2, interval)


class _Alarm:
    """SIGALRM for C-call waits: installed, then the previous handler and any
    timer someone else had running are put back."""

    __slots__ = ("beating", "fired", "previous", "previous_timer", "started")

    def __init__(self) -> None:
        self.fired = self.beating = False
        self.previous_timer: tuple[float, float] | None = None

    def on_alarm(self, signum: int, frame: object) -> None:
        self.fired = True

    def __enter__(self) -> _Alarm:
        self.previous = interrupts.raw.signal(signal.SIGALRM, self.on_alarm)
        return self

    def arm(self, seconds: float, interval: float = 0.0) -> None:
        earlier = signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-6), interval)
        self.beating = interval > 0
        if self.previous_timer is None:  # the first arm: what was running before us
            self.previous_timer, self.started = earlier, time.monotonic()

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        interrupts.run_pending_handlers()  # an alarm that fired just now is ours, not theirs
        interrupts.raw.signal(
            signal.SIGALRM, signal.SIG_DFL if self.previous is None else self.previous
        )
        if self.previous_timer and self.previous_timer[0] > 0:
            delay, interval = self.previous_timer
            left = delay - (time.monotonic() - self.started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), interval)


class waits_in_loop:
    """A loop that may wait in C many times (a send or recv of many messages):
    wait_for's SIGALRM, once a wait needs it, stays installed and beating until
    the loop ends, instead of being installed and taken down around every wait.

    A SysV stream whose queue holds two pieces waits once a piece or so; the
    handler swap and timer calls of a wait of its own cost more than the piece.
    Nothing happens unless wait_for runs inside (descriptor waits need no
    alarm). Meanwhile SIGALRM interrupts other system calls every HEARTBEAT,
    which Python retries (PEP 475). Nested loops share the outermost one's.
    """

    __slots__ = ("alarm", "outer")

    def __enter__(self) -> waits_in_loop:
        self.alarm: _Alarm | None = None
        self.outer = _loop[0]
        if self.outer is None and threading.get_ident() == _MAIN_THREAD:
            _loop[0] = self
        return self

    def __exit__(self, *exc: object) -> None:
        if _loop[0] is self:
            _loop[0] = None
        if self.alarm is not None:
            self.alarm.__exit__()

    def started_alarm(self) -> _Alarm:
        if self.alarm is None:
            self.alarm = _Alarm().__enter__()
        return self.alarm


_loop: list[waits_in_loop | None] = [None]


def heartbeat_running() -> bool:
    """Whether a loop's alarm beats now (inside waits_in_loop, once a C-call wait
    has started it). A blocking C call entered meanwhile is interrupted within
    HEARTBEAT wherever a Ctrl-C lands, so with no timeout to keep it may go
    straight into the kernel, without a non-blocking try or wait_for around it;
    an interrupted call then raises its library's "signaled" error, to be
    handled by wait_for as usual."""
    loop = _loop[0]
    return loop is not None and loop.alarm is not None and loop.alarm.beating


def heartbeat_started() -> bool:
    """Start the loop's alarm beating (every HEARTBEAT) if it does not yet, for a
    loop that blocks in its own C calls, never through wait_for: each such call
    then ends (EINTR) within HEARTBEAT wherever a Ctrl-C lands, so its caller
    can look at Ctrl-C, a timeout or a peer and go back in. It beats even where
    SIGINT is not ours (a background job): the caller's other looks need it.
    False outside waits_in_loop or off the main thread, where no alarm can beat:
    the caller must not block in C there."""
    loop = _loop[0]
    if loop is None:
        return False
    alarm = loop.started_alarm()
    if not alarm.beating:
        interrupts.ensure_handler()
        alarm.arm(HEARTBEAT, HEARTBEAT)
    return True


def wait_for(
    call: Callable[[], T],
    *,
    timeout: float | Deadline | None,
    obj: str | None,
    signaled: type[BaseException] | tuple[type[BaseException], ...],
    watch_stdout: bool = False,
) -> T:
    """Run `call`, which blocks in C and raises `signaled` when a signal interrupts it.

    For what has no descriptor to poll (a SysV queue's msgrcv/msgsnd). A Ctrl-C
    recorded while deferred is acted on before the call starts. One can still
    land between that check and the kernel entering the wait, where nothing in
    Python sees it: the heartbeat (FIRST_BEAT, then every HEARTBEAT) interrupts
    the call, and the check runs again. It also checks a watched stdout.
    Inside `waits_in_loop` the alarm stays installed between calls.
    """
    if threading.get_ident() != _MAIN_THREAD:  # signal handlers run in the main thread only
        return call()
    interrupts.ensure_handler()
    loop = _loop[0]
    if loop is not None:
        return _wait_in_c(call, loop.started_alarm(), timeout, obj, signaled, watch_stdout)
    with _Alarm() as alarm:
        return _wait_in_c(call, alarm, timeout, obj, signaled, watch_stdout)


def _wait_in_c(
    call: Callable[[], T],
    alarm: _Alarm,
    timeout: float | Deadline | None,
    obj: str | None,
    signaled: type[BaseException] | tuple[type[BaseException], ...],
    watch_stdout: bool,
) -> T:
    deadline = as_deadline(timeout)
    watching_stdout = watch_stdout and stdout_is_pipe()
    # The heartbeat is for a Ctrl-C (none in a background job) and a watched stdout.
    beating = watching_stdout or interrupts.ours()
    first = True
    while True:
        interrupts.raise_if_interrupted()
        # Checked after a heartbeat only: before the first call, the flush that
        # preceded the wait would have failed with EPIPE already.
        if watching_stdout and not first and stdout_reader_gone():
            raise StdoutClosed(errno.EPIPE, "stdout: reader went away")
        left = deadline.remaining()
        if left is not None and left <= 0:
            raise deadline.error(obj)
        beat = FIRST_BEAT if first else HEARTBEAT
        if beating:  # one shot at min(beat, left), then every HEARTBEAT
            alarm.arm(beat if left is None else min(beat, left), HEARTBEAT)
        elif left is not None:
            alarm.arm(left)
        alarm.fired = False
        try:
            return call()  # the alarm beats on, or stops when its loop or wait ends
        except signaled:
            interrupts.run_pending_handlers()
            if interrupts.interrupted():
                raise KeyboardInterrupt from None
            interrupts.raise_if_ended()  # SIGTERM or SIGHUP held while deferred
            if not alarm.fired:
                raise
            first = False
