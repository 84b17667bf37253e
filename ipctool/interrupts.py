"""Ctrl-C over the whole life of an ipctool process.

- Start-up, argument parsing, help: from the first line of ipctool's own code
  (see `ipctool/__init__.py`) until a verb runs, Ctrl-C ends the process at
  once with exit 130 and nothing on stderr. Nothing has been touched yet, so
  there is nothing to finish; a KeyboardInterrupt raised inside an import
  would print a traceback instead.
- A verb (`verb_phase`): Ctrl-C raises KeyboardInterrupt, which the core turns
  into exit 130 once the verb has unwound. Inside `interrupts_deferred()` it is
  held until the block ends, so that what already left the kernel is written
  first; a wait inside such a block still ends at once (ipctool.waiting).
- After the verb (`done_phase`): ignored. The work is done; its exit code stands.

A shell starts background jobs with SIGINT ignored: then none of this touches it.

Waits on file descriptors see signals through `signal.set_wakeup_fd`: the
interpreter's C-level handler writes the signal's number to a pipe the moment
the signal lands, so a poll() that includes the pipe can never miss a signal
that came just before it started (`wakeup_fd`, `take_wakeup`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

try:  # signal.signal and getsignal wrap these in enum conversions: 3-5 us a call,
    import _signal  # and wait_for makes several calls per message

    raw: Any = _signal
except ImportError:  # pragma: no cover - an interpreter without CPython's _signal
    raw = signal

# The SIGINT handler outside verbs: exit 130 at once, quietly. It is the one
# the package installs on its first line when run as a command.
from ipctool import _exit_interrupted as exit_interrupted


class _State:
    deferred = False  # inside interrupts_deferred()
    interrupted = False  # a Ctrl-C came while deferred and nothing has acted on it yet
    ended = 0  # the exit code of a SIGTERM or SIGHUP that came while deferred
    wakeup_read = -1  # read end of the wakeup pipe, once a wait made one
    unwinding = False  # a signal already ends the verb: later ones must not stop its clean-up


_state = _State()
_DEFAULT = signal.default_int_handler


def _on_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT during a verb: raise, as Python's own handler does, unless deferred."""
    if not _state.deferred and not _state.unwinding:
        _state.unwinding = True
        raise KeyboardInterrupt
    _state.interrupted = True


def _current() -> object:
    return raw.getsignal(signal.SIGINT)


def ours() -> bool:
    """Whether SIGINT means Ctrl-C to ipctool now (not ignored, not a plugin's own handler)."""
    handler = _current()
    return handler is _on_interrupt or handler is exit_interrupted or handler is _DEFAULT


def _install(handler: object) -> None:
    if ours():
        raw.signal(signal.SIGINT, handler)


def quiet_phase() -> None:
    """Until a verb runs: Ctrl-C is exit 130 at once (no-op if SIGINT is ignored)."""
    _install(exit_interrupted)


# Signals that end a command as Ctrl-C does, but quietly with 128 + their number:
# inside a verb they unwind it (so a FIFO it made is removed, as on Ctrl-C).
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Ended(SystemExit):
    """A verb ended by SIGTERM or SIGHUP: its cleanup runs, then exit 128 + signal."""


def _on_ending(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP: held like Ctrl-C inside interrupts_deferred (what was
    taken from the kernel is written first), else unwinding the verb at once."""
    if _state.deferred or _state.unwinding:
        _state.ended = _state.ended or 128 + signum
        return
    _state.unwinding = True
    raise Ended(128 + signum)


def _on_late_ending(signum: int, frame: FrameType | None) -> None:
    """SIGTERM or SIGHUP once the verb is over, while the command exits: its
    work is done and its exit code stands (the default action would make a
    recv that took a unit end with 143, the unit kept)."""


def _ours_to_take(number: int) -> bool:
    return raw.getsignal(number) in (signal.SIG_DFL, _on_late_ending)


def raise_if_ended() -> None:
    """A SIGTERM or SIGHUP held while deferred ends the command now (callers
    have let pending handlers run: interrupted() does). Not while the verb
    already unwinds: a second signal must not stop its clean-up."""
    if _state.ended and not _state.unwinding:
        code, _state.ended = _state.ended, 0
        _state.unwinding = True
        raise Ended(code)


@contextmanager
def verb_phase() -> Iterator[None]:
    """While a verb runs: Ctrl-C is KeyboardInterrupt (or deferred), and SIGTERM or
    SIGHUP unwind it too (where they would have killed it); quiet again after."""
    _install(_on_interrupt)
    taken = [s for s in ENDING_SIGNALS if _ours_to_take(s)]
    for ending in taken:
        raw.signal(ending, _on_ending)
    _state.unwinding = False
    try:
        yield
    finally:
        for ending in taken:
            raw.signal(ending, _on_late_ending)
        _install(exit_interrupted)
        _state.unwinding = False


def done_phase() -> None:
    """The command has finished and flushed: a late Ctrl-C, SIGTERM or SIGHUP
    changes nothing (its exit code stands; a recv that took a unit must not die
    with 143 on its way out, the unit kept)."""
    _install(int(signal.SIG_IGN))  # _signal takes plain ints, not the enum
    for ending in ENDING_SIGNALS:
        if _ours_to_take(ending):
            raw.signal(ending, int(signal.SIG_IGN))


def ensure_handler() -> None:
    """Our handler, where Python's default or the start-up one is installed.

    For code run outside the command line (tests, other programs): deferring
    needs a handler that can record instead of raising.
    """
    handler = _current()
    if handler is _DEFAULT or handler is exit_interrupted:
        raw.signal(signal.SIGINT, _on_interrupt)


def run_pending_handlers() -> None:
    """Python runs signal handlers when it next enters a Python function: this one.

    Without the call, code right after a C call can still see the flags as
    they were before the signal.
    """


def interrupted() -> bool:
    """Whether a deferred Ctrl-C is waiting to be acted on (it is then taken)."""
    run_pending_handlers()
    if _state.interrupted:
        _state.interrupted = False
        return True
    return False


def raise_if_interrupted() -> None:
    """Before any wait: a Ctrl-C recorded earlier ends it before it starts."""
    if _state.unwinding:  # the first signal ends the verb; its clean-up runs whole
        return
    if interrupted():
        _state.unwinding = True
        raise KeyboardInterrupt
    raise_if_ended()


class interrupts_deferred:
    """Ctrl-C, SIGTERM and SIGHUP inside the block are held until its end (a
    blocking wait still ends at once), so that messages already taken from the
    kernel are written first.

    A class, not a @contextmanager: recv enters it once per message or batch,
    and a generator-based one costs several times as much."""

    __slots__ = ("outer",)

    def __enter__(self) -> None:
        ensure_handler()
        self.outer, _state.deferred = _state.deferred, True

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        _state.deferred = self.outer
        if kind is None and not self.outer:  # an exception leaving the block goes first
            raise_if_interrupted()


def wakeup_fd() -> int:
    """The read end of the pipe the interpreter writes each signal's number to.

    Made on first use; non-blocking at both ends, as set_wakeup_fd requires.
    Only the main thread may call this (signals are handled there).
    """
    if _state.wakeup_read < 0:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        _state.wakeup_read = read_end
    return _state.wakeup_read


def take_wakeup() -> set[int]:
    """The signals that landed since the last call (empties the wakeup pipe)."""
    if _state.wakeup_read < 0:
        return set()
    landed: set[int] = set()
    while True:
        try:
            chunk = os.read(_state.wakeup_read, 256)
        except BlockingIOError:
            return landed
        if not chunk:
            return landed
        landed.update(chunk)


def raise_if_signaled() -> None:
    """After a wait woke on the wakeup pipe: a Ctrl-C ends the wait, deferred or not."""
    landed = take_wakeup()
    if _state.unwinding:
        return
    if interrupted() or (signal.SIGINT in landed and ours()):
        _state.unwinding = True
        raise KeyboardInterrupt
    raise_if_ended()
