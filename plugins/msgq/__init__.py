"""Message queues, SysV (by key or --id) and POSIX (/name).

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands`, the kernel work in `sysv`/`posix`.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="msgq",
            summary="Message queues: SysV by KEY or --id ID, POSIX by /NAME.",
            commands="ipctool_plugins.msgq.commands:app",
            objects="ipctool_plugins.msgq.objects:QueueSource",
            family="Messages",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.msgq.testing import contract_cases

    return contract_cases()
