"""Blocking calls with --timeout and Ctrl-C, for C extensions that wait in the kernel.

sysv_ipc and posix_ipc wait in msgrcv/mq_receive and, when a signal arrives,
raise their own "signaled" error. A Python handler that raised at that moment
would collide with theirs, so here the handlers only record what arrived and
`wait_for` turns the record into KeyboardInterrupt (exit 130) or Timeout
(exit 124) after the call has returned.

While waiting, a 0.5 s heartbeat also checks whether stdout is a pipe whose
reader has gone (`recv --follow | head -1`), so such a recv ends quietly
instead of waiting for a message nobody will read.
"""

from __future__ import annotations

import os
import signal
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ipctool.errors import Timeout

T = TypeVar("T")
HEARTBEAT = 0.5


class _Signals:
    """SIGINT and SIGALRM handlers, installed once per process on the first wait.

    While a C call waits they only record the signal; at any other time SIGINT
    raises KeyboardInterrupt as Python's own handler does. Installing them once
    keeps two sigaction calls off every wait of a busy send or recv loop.
    """

    def __init__(self) -> None:
        self.waiting = False
        self.interrupt = False
        self.alarm = False

    def on_interrupt(self, signum: int, frame: object) -> None:
        if not self.waiting:
            raise KeyboardInterrupt
        self.interrupt = True

    def on_alarm(self, signum: int, frame: object) -> None:
        self.alarm = True


_signals: _Signals | None = None


def _installed() -> _Signals:
    global _signals
    if _signals is None:
        _signals = _Signals()
        # A shell starts background jobs with SIGINT ignored; Ctrl-C is not theirs.
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, _signals.on_interrupt)
        signal.signal(signal.SIGALRM, _signals.on_alarm)
    return _signals


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C inside the block is held until its end (a blocking wait still ends
    at once), so that messages already taken from the kernel are written first."""
    signals = _installed()
    outer, signals.waiting = signals.waiting, True
    try:
        yield
    finally:
        signals.waiting = outer
    _run_pending_handlers()
    if signals.interrupt and not outer:
        signals.interrupt = False
        raise KeyboardInterrupt


def _run_pending_handlers() -> None:
    """Python runs signal handlers when it next enters a Python function: this one.

    Without the call, an except clause right after the C call can still see
    the flags as they were before the signal.
    """


def stdout_is_pipe() -> bool:
    try:
        mode = os.fstat(1).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def stdout_reader_gone() -> bool:
    import select

    poller = select.poll()
    poller.register(1, 0)  # POLLERR and POLLHUP are always reported
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def wait_for(
    call: Callable[[], T],
    *,
    timeout: float | None,
    obj: str,
    signaled: type[BaseException] | tuple[type[BaseException], ...],
    watch_stdout: bool = False,
) -> T:
    """Run `call`, which blocks and raises `signaled` when a signal interrupts it."""
    signals = _installed()
    deadline = None if timeout is None else time.monotonic() + timeout
    heartbeat = HEARTBEAT if watch_stdout and stdout_is_pipe() else None
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise Timeout(obj, f"timed out after {timeout:g} s")
        slices = [s for s in (remaining, heartbeat) if s is not None]
        if slices:
            signal.setitimer(signal.ITIMER_REAL, max(min(slices), 1e-6))
        outer, signals.waiting = signals.waiting, True
        try:
            return call()
        except signaled:
            _run_pending_handlers()
            if signals.interrupt:
                signals.interrupt = False
                raise KeyboardInterrupt from None
            if not signals.alarm:
                raise
            signals.alarm = False
            if heartbeat and stdout_reader_gone():
                raise BrokenPipeError from None
        finally:
            signals.waiting = outer
            if slices:
                signal.setitimer(signal.ITIMER_REAL, 0)
