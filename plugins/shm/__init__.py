"""Shared memory, SysV (by key or --id) and POSIX (/name): a blackboard, or a ring
buffer for streams.

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands`, the kernel work in `segments`; the
layouts (`board`, `ring`) know no SysV or POSIX, so the mmap plugin shares them.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="shm",
            summary="Shared memory: SysV by KEY or --id ID, POSIX by /NAME.",
            commands="ipctool_plugins.shm.commands:app",
            objects="ipctool_plugins.shm.objects:ShmSource",
            family="Memory",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.shm.testing import contract_cases

    return contract_cases()
