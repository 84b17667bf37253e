"""Contract cases for tcp: listeners on loopback port 0, each on the port it got.

recv must be listening before send (recv_first): the kit starts it on
127.0.0.1:0 and sends to the address it announced. A connection does not
outlive its peers (lasting false), and a TCP socket leaves nothing behind once
its process has ended: there is nothing to remove, and no leftovers to find.
"""

from __future__ import annotations

from typing import Any

from ipctool.api import ContractCase


def nothing_to_remove(target: str) -> None:
    """A socket goes with the process that holds it."""


def contract_cases() -> list[ContractCase]:
    common: dict[str, Any] = {
        "mechanism": "tcp",
        "recv_first": True,
        "lasting": False,
        "stream": True,
        "remove": nothing_to_remove,
        "bad_target": "[::1",
        "leftovers": list,  # nothing outlives the processes the kit ends
    }
    return [
        ContractCase(label="ipv4", new_target=lambda: "127.0.0.1:0", **common),
        ContractCase(label="ipv6", new_target=lambda: "[::1]:0", **common),
    ]
