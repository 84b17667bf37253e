"""Contract cases for udp: receivers on a port the kernel picks, IPv4 and IPv6.

recv binds before send can reach it (recv_first): the kit starts it on port 0
and sends to the address it announced. A UDP socket goes with its process, so
nothing outlives the peers (lasting=False). What a run can leave behind is a
process of its own still holding a UDP socket (a receiver never ended), or a
network namespace a two-host test made: leftovers() finds both by the run's tag
(IPCTOOL_TEST_TAG in a process's environment; the namespace's name), and
remove() ends that process or deletes that namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from typing import Any

from ipctool.api import ContractCase
from ipctool.testkit import TAG_ENV, run_tag

NETNS_PREFIX = "ipctool-test-"
HELD_PREFIX = "pid:"  # a leftover process: pid:PID:HOST:PORT


def run_netns_prefix() -> str:
    """What every network namespace of this run is called: ipctool-test-TAG-..."""
    return f"{NETNS_PREFIX}{run_tag()}-"


def remove(target: str) -> None:
    """A leftover of this run: end its process, or delete its namespace. A contract
    target (an address) has nothing to remove: its socket went with recv."""
    if target.startswith(HELD_PREFIX):
        pid = int(target.split(":")[1])
        if is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    elif target.startswith(run_netns_prefix()):
        subprocess.run(["ip", "netns", "delete", target], capture_output=True, check=False)


def leftovers() -> list[str]:
    return held_sockets() + namespaces()


def namespaces() -> list[str]:
    try:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    except OSError:  # no iproute2: no namespace was made either
        return []
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith(run_netns_prefix())]


def is_ours(pid: int) -> bool:
    """A process of this run: not this one, with the run's tag in its environment."""
    if pid == os.getpid():
        return False
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            variables = f.read().split(b"\0")
    except OSError:
        return False
    return f"{TAG_ENV}={run_tag()}".encode() in variables


def held_sockets() -> list[str]:
    """pid:PID:ADDRESS for each UDP socket a process of this run still holds."""
    from ipctool.api import address_text, inet_table

    by_inode = {s.inode: s for s in inet_table(socket.IPPROTO_UDP).sockets}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or not is_ours(int(entry)):
            continue
        for inode in socket_inodes(int(entry)):
            if inode in by_inode:
                found.append(f"{HELD_PREFIX}{entry}:{address_text(by_inode[inode].local)}")
    return found


def socket_inodes(pid: int) -> list[int]:
    inodes = []
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.append(int(link[8:-1]))
    return inodes


def contract_cases() -> list[ContractCase]:
    common: dict[str, Any] = {
        "mechanism": "udp",
        "recv_first": True,
        "lasting": False,
        "remove": remove,
        "bad_target": "[::1",
        "leftovers": leftovers,
    }
    return [
        ContractCase(label="ipv4", new_target=lambda: "127.0.0.1:0", **common),
        ContractCase(label="ipv6", new_target=lambda: "[::1]:0", **common),
    ]
