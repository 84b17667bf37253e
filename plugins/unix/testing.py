"""Contract cases for unix: sockets at the kit's unique paths and abstract names.

recv listens (it must be running before send: recv_first), so the kit starts
it and sends to what it announced. A listener killed by the kit (SIGKILL)
leaves its socket file: inspect sees it, and clean removes it (nothing listens).
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Any

from ipctool.api import ContractCase
from ipctool.testkit import run_name_prefix, run_path_prefix, unique_name, unique_path


def remove_socket(target: str) -> None:
    """The socket file at a path (an abstract name goes with its socket)."""
    if target.startswith("@"):
        return
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(target).st_mode):
            os.unlink(target)


def socket_leftovers() -> list[str]:
    """Socket files of this run left in /tmp."""
    prefix = run_path_prefix()
    directory, _, start = prefix.rpartition("/")
    return [
        e.path
        for e in os.scandir(directory)
        if e.name.startswith(start) and stat.S_ISSOCK(e.stat(follow_symlinks=False).st_mode)
    ]


def unique_abstract() -> str:
    return "@" + unique_name().lstrip("/")


def abstract_leftovers() -> list[str]:
    """This run's abstract names still held by a socket (a receiver left running)."""
    start = "@" + run_name_prefix().lstrip("/")
    try:
        with open("/proc/net/unix") as f:
            names = {line.split()[-1] for line in f if len(line.split()) > 7}
    except OSError:
        return []
    return sorted(n for n in names if n.startswith(start))


def contract_cases() -> list[ContractCase]:
    common: dict[str, Any] = {
        "mechanism": "unix",
        "recv_first": True,
        "remove": remove_socket,
        "bad_target": "/",
    }
    return [
        ContractCase(
            label="stream",
            new_target=lambda: unique_path(".sock"),
            stream=True,
            leftovers=socket_leftovers,
            **common,
        ),
        ContractCase(
            label="dgram",
            new_target=lambda: unique_path(".sock"),
            send_args=("--type", "dgram"),
            recv_args=("--type", "dgram"),
            leftovers=socket_leftovers,
            **common,
        ),
        ContractCase(
            label="seqpacket",
            new_target=lambda: unique_path(".sock"),
            send_args=("--type", "seqpacket"),
            recv_args=("--type", "seqpacket"),
            leftovers=socket_leftovers,
            **common,
        ),
        ContractCase(
            label="abstract",
            new_target=unique_abstract,
            stream=True,
            lasting=False,  # an abstract name goes with its socket: nothing outlives recv
            leftovers=abstract_leftovers,
            **common,
        ),
    ]
