"""Contract cases for msgq: the kit's unique SysV keys and POSIX names, removed without
ipctool."""

from __future__ import annotations

import contextlib
import os

from ipctool.api import ContractCase
from ipctool.testkit import run_key_prefix, run_name_prefix, unique_key, unique_name


def remove_sysv(target: str) -> None:
    import sysv_ipc

    with contextlib.suppress(sysv_ipc.ExistentialError):
        sysv_ipc.MessageQueue(int(target, 0)).remove()


def remove_posix(target: str) -> None:
    import posix_ipc

    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_message_queue(target)


def sysv_leftovers() -> list[str]:
    with open("/proc/sysvipc/msg") as f:
        next(f)
        keys = [int(line.split()[0]) & 0xFFFFFFFF for line in f]
    return [hex(k) for k in keys if k >> 16 == run_key_prefix()]


def posix_leftovers() -> list[str]:
    from ipctool_plugins.msgq import mqueuefs

    directory, _ = mqueuefs.directory()
    prefix = run_name_prefix().lstrip("/")
    if not directory:
        return []
    return ["/" + n for n in os.listdir(directory) if n.startswith(prefix)]


def contract_cases() -> list[ContractCase]:
    return [
        ContractCase(
            mechanism="msgq",
            label="sysv",
            new_target=lambda: hex(unique_key()),
            remove=remove_sysv,
            bad_target="notakey",
            leftovers=sysv_leftovers,
        ),
        ContractCase(
            mechanism="msgq",
            label="posix",
            new_target=unique_name,
            remove=remove_posix,
            bad_target="/two/slashes",
            leftovers=posix_leftovers,
        ),
        ContractCase(  # a receiver that starts before its sender (and creates the queue)
            mechanism="msgq",
            label="sysv-recv-first",
            new_target=lambda: hex(unique_key()),
            remove=remove_sysv,
            bad_target="0x",
            recv_first=True,
            recv_args=("--create",),
            leftovers=sysv_leftovers,
        ),
    ]
