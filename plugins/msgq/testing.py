"""Contract cases for msgq: the kit's unique SysV keys and POSIX names, removed without
ipctool."""

from __future__ import annotations

import contextlib

from ipctool.api import ContractCase
from ipctool.testing import ipc_cases, posix_names_left, posix_unlinker


def remove_sysv(target: str) -> None:
    import sysv_ipc

    with contextlib.suppress(sysv_ipc.ExistentialError):
        sysv_ipc.MessageQueue(int(target, 0)).remove()


remove_posix = posix_unlinker("unlink_message_queue")


def posix_leftovers() -> list[str]:
    from ipctool_plugins.msgq import mqueuefs

    return posix_names_left(mqueuefs.directory()[0])


def contract_cases() -> list[ContractCase]:
    return ipc_cases(
        "msgq",
        remove_sysv=remove_sysv,
        remove_posix=remove_posix,
        sysv_table="/proc/sysvipc/msg",
        posix_leftovers=posix_leftovers,
        variants=[  # a receiver that starts before its sender (and creates the queue)
            (
                "sysv-recv-first",
                {"bad_target": "0x", "recv_first": True, "recv_args": ("--create",)},
            )
        ],
    )
