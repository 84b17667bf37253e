"""ipctool: a plugin-based command-line swiss-army knife for Linux IPC.

Plugin authors import from :mod:`ipctool.api` only; tests use :mod:`ipctool.testing`.
"""

__version__ = "0.1.0"


def _guard_start() -> None:
    """Run as the `ipctool` command: from here on, a Ctrl-C exits 130 quietly.

    This is the first code of ipctool that runs (the console script and
    `python -m ipctool` both import this package before anything else), and
    the imports that follow take most of start-up: a KeyboardInterrupt raised
    inside one of them would print a traceback. Imported as a library, nothing
    changes. `_signal` is the interpreter's built-in module: `signal` would
    first import enum, a window of a millisecond without the guard.
    """
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 != "-m" and argv0.rpartition("/")[2] != "ipctool":
        return
    import _signal

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:  # not a background job
        _signal.signal(_signal.SIGINT, _exit_interrupted)


def _exit_interrupted(signum: int, frame: object) -> None:
    """SIGINT before a verb runs (see ipctool.interrupts): exit 130, nothing said."""
    import os

    os._exit(130)


_guard_start()
