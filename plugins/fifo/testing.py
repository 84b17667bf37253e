"""Contract cases for fifo: FIFOs at the kit's unique paths, removed without ipctool."""

from __future__ import annotations

import contextlib
import os
import stat

from ipctool.api import ContractCase
from ipctool.testkit import run_path_prefix, unique_path


def remove_fifo(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            os.unlink(path)


def fifo_leftovers() -> list[str]:
    prefix = run_path_prefix()
    directory, _, start = prefix.rpartition("/")
    return [
        e.path
        for e in os.scandir(directory)
        if e.name.startswith(start) and stat.S_ISFIFO(e.stat(follow_symlinks=False).st_mode)
    ]


def contract_cases() -> list[ContractCase]:
    return [
        ContractCase(
            mechanism="fifo",
            label="fifo",
            new_target=lambda: unique_path(".fifo"),
            remove=remove_fifo,
            bad_target="/",
            recv_first=True,
            send_args=("--keep",),
            recv_args=("--keep",),
            stream=True,
            leftovers=fifo_leftovers,
        )
    ]
