"""Commands a verb runs (sem hold's COMMAND, unix pair's two): started with Ctrl-C,
SIGTERM and SIGHUP held, and waited for with each such signal passed on to them.

    with HeldSignals():                       # a signal while it starts waits
        child = start(command)
    with HeldSignals(forward_to=child) as held:
        code = child.wait()                   # each signal passed on; none ends the wait
    held.raise_first()                        # then the first acts, as its handler would
    return exit_status(code)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def start_command(command: list[str], **popen: Any) -> Any:
    """The running command (subprocess.Popen), or None if there is no such program."""
    import subprocess

    try:
        return subprocess.Popen(command, **popen)
    except FileNotFoundError:
        return None


def exit_status(code: int) -> int:
    """A child's exit status as a shell gives it: 128+N when signal N killed it."""
    return 128 - code if code < 0 else code


def pass_on(stop: BaseException, children: Sequence[Any]) -> None:
    """A verb stopped by Ctrl-C, SIGTERM or SIGHUP (`stop`, as its handler raised it)
    while its children started: the same signal to each still running, then wait
    for them all (each further signal passed on too). The caller re-raises `stop`."""
    import signal

    number = signal.SIGINT if isinstance(stop, KeyboardInterrupt) else signal.SIGTERM
    if isinstance(stop, SystemExit) and isinstance(stop.code, int) and stop.code > 128:
        number = signal.Signals(stop.code - 128)
    for child in children:
        if child.poll() is None:
            child.send_signal(number)
    with HeldSignals(forward_to=list(children)):
        for child in children:
            child.wait()


class HeldSignals:
    """Ctrl-C, SIGTERM and SIGHUP held while a child starts (one that lands inside
    subprocess.Popen would otherwise end the verb with the child running and unknown)
    or, with forward_to (a child or several), while the verb waits for them: each is
    passed on to every child still running at once and none ends the wait, so the
    verb goes on only once they are gone, however many come. At the end, the first
    that came is raised, as its handler would have."""

    ENDING = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, forward_to: Any = None) -> None:
        if forward_to is None:
            self.children: Sequence[Any] = ()
        elif isinstance(forward_to, Sequence):
            self.children = forward_to
        else:
            self.children = (forward_to,)
        self.child = forward_to

    def __enter__(self) -> HeldSignals:
        import signal

        self.came: list[int] = []
        self.previous: dict[int, Any] = {}
        for name in self.ENDING:
            number = getattr(signal, name)
            handler = signal.getsignal(number)
            if callable(handler):  # the verb's own unwinding (ignored ones stay ignored)
                self.previous[number] = signal.signal(number, self._record)
        return self

    def _record(self, number: int, frame: object) -> None:
        self.came.append(number)
        for child in self.children:
            if child.poll() is None:
                child.send_signal(number)

    def raise_first(self) -> None:
        """The first signal that came, raised as its own handler would have."""
        import signal

        if self.came and self.came[0] == signal.SIGINT:
            raise KeyboardInterrupt
        if self.came:
            raise SystemExit(128 + self.came[0])

    def __exit__(self, *exc: object) -> None:
        import signal

        for number, handler in self.previous.items():
            signal.signal(number, handler)
        if exc[0] is None and not self.children:
            self.raise_first()
