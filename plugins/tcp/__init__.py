"""TCP connections by HOST:PORT, [IPV6]:PORT or :PORT.

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands` (their socket work is the core's:
ipctool.sockets, ipctool.inet), the sockets for inspect in `objects`.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="tcp",
            summary="TCP connections by HOST:PORT: listen, connect, inspect who holds them.",
            commands="ipctool_plugins.tcp.commands:app",
            objects="ipctool_plugins.tcp.objects:TcpSource",
            family="Network",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.tcp.testing import contract_cases

    return contract_cases()
