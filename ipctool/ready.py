"""Readiness: a receiver that must start first tells a script, or the test kit, when
it may go on, so that nobody has to sleep and hope.

    ipctool fifo recv /tmp/f --ready-fd 3 3>ready &   # or IPCTOOL_READY_FD=3
    read target <ready                                # returns once recv waits

A plugin calls `announce_ready(target, ready_fd)` once its object is bound,
opened or waited on, so that whatever a peer does from then on reaches it.
"""

from __future__ import annotations

import contextlib
import os

from ipctool.errors import UsageError, from_os_error

READY_ENV = "IPCTOOL_READY_FD"
_announced = False


def announce_ready(target: str, fd: int | None = None) -> None:
    """Write `target` and a newline to the ready fd, once, and close it.

    `fd` is the verb's --ready-fd; without it, IPCTOOL_READY_FD names the fd.
    With neither this does nothing. `target` is what a peer passes to reach
    the object (for a listener on port 0, the port it got). A reader that went
    away is no error: nobody is waiting for the line any more.
    """
    global _announced
    if _announced:
        return
    value = os.environ.pop(READY_ENV, "")  # not inherited by anything started later
    if fd is None:
        if not value:
            return
        fd = _env_fd(value)
    _announced = True
    try:
        os.write(fd, target.encode(errors="surrogateescape") + b"\n")  # one write: one line
    except BrokenPipeError:
        pass
    except OSError as err:
        raise from_os_error(f"ready fd {fd}", err) from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _env_fd(value: str) -> int:
    from ipctool.targets import parse_fd

    try:
        return parse_fd(value)
    except UsageError as err:
        raise UsageError(READY_ENV, f"{value}: {err.reason}") from None


def check_environment() -> None:
    """A bad IPCTOOL_READY_FD is a usage error before the verb touches anything."""
    value = os.environ.get(READY_ENV)
    if value:
        _env_fd(value)
