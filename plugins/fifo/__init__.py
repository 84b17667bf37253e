"""FIFOs (named pipes) by path.

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands`, the objects for inspect/clean in
`objects`.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="fifo",
            summary="FIFOs (named pipes) by PATH: byte streams between processes.",
            commands="ipctool_plugins.fifo.commands:app",
            objects="ipctool_plugins.fifo.objects:FifoSource",
            family="Streams",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.fifo.testing import contract_cases

    return contract_cases()
