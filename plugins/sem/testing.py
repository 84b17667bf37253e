"""Contract cases for sem: the kit's unique SysV keys and POSIX names, removed without
ipctool. A semaphore carries a count, not bytes: the payload is empty, recv prints
nothing, and the kit's `counts` check holds send --count against recv."""

from __future__ import annotations

import contextlib
import os

from ipctool.api import ContractCase
from ipctool.testkit import run_key_prefix, run_name_prefix, unique_key, unique_name


def remove_sysv(target: str) -> None:
    from ipctool_plugins.sem import sysv

    with contextlib.suppress(FileNotFoundError):
        sysv.remove(sysv.semget(int(target, 0), 0, 0))


def remove_posix(target: str) -> None:
    import posix_ipc

    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_semaphore(target)


def sysv_leftovers() -> list[str]:
    with open("/proc/sysvipc/sem") as f:
        next(f)
        keys = [int(line.split()[0]) & 0xFFFFFFFF for line in f]
    return [hex(k) for k in keys if k >> 16 == run_key_prefix()]


def posix_leftovers() -> list[str]:
    prefix = "sem." + run_name_prefix().lstrip("/")
    return ["/" + n[4:] for n in os.listdir("/dev/shm") if n.startswith(prefix)]


def contract_cases() -> list[ContractCase]:
    common: dict = {"payload": b"", "counts": True}
    return [
        ContractCase(
            mechanism="sem",
            label="sysv",
            new_target=lambda: hex(unique_key()),
            remove=remove_sysv,
            bad_target="notakey",
            leftovers=sysv_leftovers,
            **common,
        ),
        ContractCase(
            mechanism="sem",
            label="posix",
            new_target=unique_name,
            remove=remove_posix,
            bad_target="/two/slashes",
            leftovers=posix_leftovers,
            **common,
        ),
        ContractCase(  # a waiter that starts before the poster (and creates the semaphore)
            mechanism="sem",
            label="posix-recv-first",
            new_target=unique_name,
            remove=remove_posix,
            bad_target="/",
            recv_first=True,
            recv_args=("--create",),
            leftovers=posix_leftovers,
            **common,
        ),
    ]
