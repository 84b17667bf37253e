"""unix pair: two commands joined by a socketpair, as the lecture's example joins
a parent and its forked child.

Each command gets one end: as its stdin and stdout (what one writes, the
other reads, both ways), or with --fd N as descriptor N, its stdin and stdout
left as they are. ipctool keeps no end itself, so each sees end of data once
the other has exited. Ctrl-C, SIGTERM and SIGHUP are passed on to both, and
pair waits for both.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from ipctool.api import (
    HeldSignals,
    IpcError,
    UsageError,
    exit_status,
    pass_on,
    start_command,
)

NOT_FOUND, NOT_EXECUTABLE = 127, 126


def split_commands(words: list[str]) -> tuple[list[str], list[str]]:
    """`CMD1 [ARG...] -- CMD2 [ARG...]` (the first -- came before CMD1 and is gone)."""
    if "--" not in words:
        raise UsageError(None, "name two commands: pair -- CMD1 [ARG...] -- CMD2 [ARG...]")
    at = words.index("--")
    first, second = words[:at], words[at + 1 :]
    if not first or not second:
        raise UsageError(None, "name two commands: pair -- CMD1 [ARG...] -- CMD2 [ARG...]")
    return first, second


def run_pair(first: list[str], second: list[str], kind: int, fd: int | None) -> int:
    """Both commands' statuses reported (when either failed); the pair's status."""
    ends = socket.socketpair(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
    children: list[Any] = []
    codes: list[int | None] = [None, None]
    try:
        with HeldSignals():  # a signal while they start acts once both have started
            for index, (command, end) in enumerate(zip((first, second), ends, strict=True)):
                child, codes[index] = launch(command, end, fd)
                if child is not None:
                    children.append((index, child))
    except BaseException as stop:  # that signal: passed on to both, then pair ends by it
        pass_on(stop, [child for _, child in children])
        raise
    finally:
        for end in ends:
            end.close()  # each command holds its own end now; ours would keep EOF away
    with HeldSignals(forward_to=[child for _, child in children]) as held:
        for index, child in children:
            codes[index] = exit_status(child.wait())
    held.raise_first()
    return report(first, second, codes)


def launch(command: list[str], end: socket.socket, fd: int | None) -> tuple[Any, int | None]:
    """(the child, None), or (None, its status) when it could not start."""
    try:
        if fd is None:
            child = start_command(command, stdin=end, stdout=end)
        else:
            child = start_on_fd(command, end, fd)
    except OSError as err:
        line(command[0], (err.strerror or str(err)).lower())
        return None, NOT_EXECUTABLE
    if child is None:
        line(command[0], "command not found")
        return None, NOT_FOUND
    return child, None


def start_on_fd(command: list[str], end: socket.socket, fd: int) -> Any:
    """The command with `end` as its descriptor `fd`: put there in ipctool for the
    moment it starts (whatever ipctool had there is put back after)."""
    try:
        saved = os.dup(fd)
    except OSError:
        saved = None
    os.dup2(end.fileno(), fd)
    try:
        return start_command(command, pass_fds=(fd,))
    finally:
        if saved is None:
            os.close(fd)
        else:
            os.dup2(saved, fd, inheritable=False)
            os.close(saved)


def report(first: list[str], second: list[str], codes: list[int | None]) -> int:
    """One line with both statuses when either failed: `pair: CMD1 exit 0, CMD2 exit 3`."""
    one, two = (code or 0 for code in codes)
    if one or two:
        line("pair", f"{first[0]} exit {one}, {second[0]} exit {two}")
    return two or one


def line(obj: str | None, reason: str) -> None:
    sys.stderr.write(IpcError(obj, reason).line("unix") + "\n")
