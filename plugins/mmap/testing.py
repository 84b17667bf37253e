"""Contract cases for mmap: files at the kit's unique paths, removed without ipctool."""

from __future__ import annotations

import contextlib
import os
import stat

from ipctool.api import ContractCase
from ipctool.testkit import run_path_prefix, unique_path

SUFFIX = ".mmap"


def remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)


def file_leftovers() -> list[str]:
    """Regular files of this run's unique paths (the kit's fixture paths included)."""
    directory, _, start = run_path_prefix().rpartition("/")
    found = []
    for entry in os.scandir(directory):
        with contextlib.suppress(OSError):
            if entry.name.startswith(start) and entry.is_file(follow_symlinks=False):
                found.append(entry.path)
    return found


# The ring, recv first: it must hold the kit's whole 1 MiB, which the kit reads from
# recv's stdout only once send has ended (as shm's stream cases).
STREAM_ARGS = ("--stream", "--size", str((2 << 20) + 4096))


def contract_cases() -> list[ContractCase]:
    return [
        ContractCase(
            mechanism="mmap",
            label="file",
            new_target=lambda: unique_path(SUFFIX),
            remove=remove_file,
            bad_target="/",  # a directory: refused, untouched
            leftovers=file_leftovers,
            waits=False,  # a blackboard: recv prints what is there, it never waits
        ),
        ContractCase(
            mechanism="mmap",
            label="stream",
            new_target=lambda: unique_path(SUFFIX),
            remove=remove_file,
            bad_target="/dev/null",  # a device: refused, untouched
            recv_first=True,
            send_args=STREAM_ARGS,
            recv_args=STREAM_ARGS,
            stream=True,
            lasting=False,  # the receiver removes the file at the end of the stream
            leftovers=file_leftovers,
        ),
    ]
