"""Contract cases for msgq: unique SysV keys and POSIX names, removed without ipctool."""

from __future__ import annotations

import contextlib
import itertools
import os

from ipctool.api import ContractCase

# Test keys: 0x7e, then 16 bits of the pid, then a counter, so parallel test
# processes never meet; clean-up sweeps this range.
TEST_KEY_BASE = 0x7E000000
TEST_NAME_PREFIX = "/ipctool-test-"
_counter = itertools.count(1)


def unique_key() -> int:
    return TEST_KEY_BASE | (os.getpid() & 0xFFFF) << 8 | next(_counter) & 0xFF


def unique_name() -> str:
    return f"{TEST_NAME_PREFIX}{os.getpid()}-{next(_counter)}"


def remove_sysv(target: str) -> None:
    import sysv_ipc

    with contextlib.suppress(sysv_ipc.ExistentialError):
        sysv_ipc.MessageQueue(int(target, 0)).remove()


def remove_posix(target: str) -> None:
    import posix_ipc

    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_message_queue(target)


def contract_cases() -> list[ContractCase]:
    return [
        ContractCase(
            mechanism="msgq",
            label="sysv",
            new_target=lambda: hex(unique_key()),
            remove=remove_sysv,
            bad_target="notakey",
        ),
        ContractCase(
            mechanism="msgq",
            label="posix",
            new_target=unique_name,
            remove=remove_posix,
            bad_target="/two/slashes",
        ),
    ]
