"""Memory-mapped files by path: a blackboard, or a ring buffer for streams.

Loaded on every ipctool start: keep this module free of imports beyond
ipctool.api. The verbs are in `commands`, the safe opening of files in `files`;
the layouts are shm's (board.py, ring.py), which know no SysV or POSIX.
"""

from __future__ import annotations

from ipctool.api import ContractCase, Mechanism, hookimpl


@hookimpl
def ipctool_mechanisms() -> list[Mechanism]:
    return [
        Mechanism(
            name="mmap",
            summary="Memory-mapped files by PATH: a blackboard, or a ring for streams.",
            commands="ipctool_plugins.mmap.commands:app",
            objects="ipctool_plugins.mmap.objects:MmapSource",
            family="Memory",
        )
    ]


@hookimpl
def ipctool_contract_cases() -> list[ContractCase]:
    from ipctool_plugins.mmap.testing import contract_cases

    return contract_cases()
