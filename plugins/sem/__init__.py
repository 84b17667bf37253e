"""Semaphores, SysV (by key or --id; every element of a set) and POSIX (/name).

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands`, the kernel work in `sysv`/`posix`.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="sem",
            summary="Semaphores: SysV by KEY or --id ID, POSIX by /NAME; post, wait, hold.",
            commands="ipctool_plugins.sem.commands:app",
            objects="ipctool_plugins.sem.objects:SemSource",
            family="Signals",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.sem.testing import contract_cases

    return contract_cases()
