"""Contract cases for sem: the kit's unique SysV keys and POSIX names, removed without
ipctool. A semaphore carries a count, not bytes: the payload is empty, recv prints
nothing, and the kit's `counts` check holds send --count against recv."""

from __future__ import annotations

import contextlib

from ipctool.api import ContractCase
from ipctool.testing import ipc_cases, posix_names_left, posix_unlinker


def remove_sysv(target: str) -> None:
    from ipctool_plugins.sem import sysv

    with contextlib.suppress(FileNotFoundError):
        sysv.remove(sysv.semget(int(target, 0), 0, 0))


remove_posix = posix_unlinker("unlink_semaphore")


def posix_leftovers() -> list[str]:
    return posix_names_left("/dev/shm", "sem.")


def contract_cases() -> list[ContractCase]:
    return ipc_cases(
        "sem",
        remove_sysv=remove_sysv,
        remove_posix=remove_posix,
        sysv_table="/proc/sysvipc/sem",
        posix_leftovers=posix_leftovers,
        variants=[  # a waiter that starts before the poster (and creates the semaphore)
            (
                "posix-recv-first",
                {"bad_target": "/", "recv_first": True, "recv_args": ("--create",)},
            )
        ],
        payload=b"",
        counts=True,
    )
