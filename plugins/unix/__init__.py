"""Unix domain sockets by PATH or @NAME, and socketpairs.

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands` (their socket work is the core's,
ipctool.sockets), the objects for inspect/clean in `objects`.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="unix",
            summary="Unix domain sockets by PATH or @NAME (stream, dgram, seqpacket), socketpairs.",
            commands="ipctool_plugins.unix.commands:app",
            objects="ipctool_plugins.unix.objects:UnixSource",
            family="Streams",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.unix.testing import contract_cases

    return contract_cases()
