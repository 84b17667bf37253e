"""UDP datagrams by HOST:PORT: unicast, broadcast and multicast groups.

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands` (their socket work is the core's,
ipctool.sockets and ipctool.inet), the sockets' set-up in `endpoints`, and
the objects for inspect/clean in `objects`.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="udp",
            summary="UDP datagrams by HOST:PORT: unicast, broadcast, multicast groups.",
            commands="ipctool_plugins.udp.commands:app",
            objects="ipctool_plugins.udp.objects:UdpSource",
            family="Network",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.udp.testing import contract_cases

    return contract_cases()
