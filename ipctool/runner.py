"""Runs every verb of every plugin the same way: one-line errors, exit codes, quiet EPIPE.

The core wraps each plugin command's callback with `guarded`, so a plugin
raises `ipctool.api` errors (or lets an OSError through) and never prints,
formats or exits on its own.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import typer

from ipctool._click import ClickException
from ipctool.errors import ExitCode, IpcError, describe, from_os_error, printable, say

DEBUG_ENV = "IPCTOOL_DEBUG"
DEBUG_ON = ("1", "true", "yes")  # any other value, 0 and false included, leaves it off
debug = os.environ.get(DEBUG_ENV, "").lower() in DEBUG_ON


# Settings of every typer app in ipctool, the top level and each mechanism's:
# plain help (rich help costs ~150 ms), no typer completion options (ipctool
# ships its own scripts), no rich tracebacks, and -h as well as --help.
APP_SETTINGS: dict[str, Any] = {
    "rich_markup_mode": None,
    "add_completion": False,
    "no_args_is_help": True,
    "pretty_exceptions_enable": False,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}


def fail(line: str, code: int) -> NoReturn:
    say(line)
    raise typer.Exit(code)


def silence_stdout() -> None:
    """After EPIPE: point fd 1 at /dev/null so no later flush raises again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def flush_stdout() -> None:
    if sys.stdout is not None and not stdout_failed():
        sys.stdout.flush()


def is_stdout_closed(err: BrokenPipeError) -> bool:
    """Whether a broken pipe is our stdout's (quiet 141) rather than a peer's."""
    from ipctool.errors import StdoutClosed

    if isinstance(err, StdoutClosed):
        return True
    from ipctool.waiting import stdout_reader_gone

    return stdout_reader_gone()


class NamedStdout:
    """sys.stdout, whose failures name it: `ipctool: stdout: no space left on device`.

    Help, --version, JSON and tables are written through sys.stdout by click,
    rich and print_json alike; an OSError from there would otherwise be an
    internal error that names nothing. A closed pipe stays BrokenPipeError (a
    quiet exit 141).
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as err:
            raise self._failed(err) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as err:
            raise self._failed(err) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _failed(self, err: OSError) -> BaseException:
        self.failed = True
        return err if isinstance(err, BrokenPipeError) else from_os_error("stdout", err)


def name_stdout_failures() -> None:
    if sys.stdout is not None and not isinstance(sys.stdout, NamedStdout):
        sys.stdout = NamedStdout(sys.stdout)


def stdout_failed() -> bool:
    """Whether writing to stdout failed (and was reported): then nothing more is
    flushed, and fd 1 points at /dev/null so the interpreter's own flush at exit
    has nothing to complain about."""
    if isinstance(sys.stdout, NamedStdout) and sys.stdout.failed:
        silence_stdout()
        return True
    return False


current: str | None = None  # the mechanism whose verb runs, for warning lines


def warn(obj: str | None, text: str) -> None:
    """A warning line during a verb: `ipctool: MECHANISM: OBJECT: warning: TEXT`."""
    say(IpcError(obj, f"warning: {text}").line(current))


def report_unexpected(mechanism: str | None, exc: BaseException) -> NoReturn:
    if debug:
        import traceback

        traceback.print_exception(exc)
    where = f"{mechanism}: " if mechanism else ""
    reason = printable(describe(exc))
    fail(f"ipctool: {where}internal error: {reason} (--debug shows where)", ExitCode.FAILURE)


def guarded(mechanism: str, callback: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a verb so that every way it can end maps to a documented exit."""

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        from ipctool.interrupts import verb_phase

        global current
        current = mechanism
        try:
            if os.environ.get("IPCTOOL_READY_FD"):
                from ipctool.ready import check_environment

                check_environment()
            with verb_phase():  # Ctrl-C is KeyboardInterrupt here, so the verb can unwind
                result = callback(*args, **kwargs)
                flush_stdout()
            return result
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except IpcError as err:
            if debug:
                import traceback

                traceback.print_exception(err)
            fail(err.line(mechanism), err.exit_code)
        except BrokenPipeError as err:
            if not is_stdout_closed(err):  # a peer's pipe: an error naming what we know
                mapped = from_os_error(err.filename, err)
                fail(mapped.line(mechanism), mapped.exit_code)
            silence_stdout()
            raise typer.Exit(ExitCode.BROKEN_PIPE) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except OSError as err:
            mapped = from_os_error(err.filename, err)
            fail(mapped.line(mechanism), mapped.exit_code)
        except Exception as err:
            report_unexpected(mechanism, err)

    return run
