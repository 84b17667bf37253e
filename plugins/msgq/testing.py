"""Contract cases for msgq: unique SysV keys and POSIX names, removed without ipctool."""

from __future__ import annotations

import contextlib
import itertools
import os

from ipctool.api import ContractCase

# Test keys are 0x7e, a run tag, a worker number and a counter (8 bits each):
# parallel workers never meet, and a run's leak check sweeps only its own tag,
# so two test runs on one machine leave each other alone.
TEST_KEY_BASE = 0x7E000000
TEST_NAME_PREFIX = "/ipctool-test-"
TAG_ENV = "IPCTOOL_TEST_TAG"
_counter = itertools.count(1)


def run_tag() -> int:
    return int(os.environ.get(TAG_ENV, os.getpid())) & 0xFF


def _worker() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    return int(worker[2:]) & 0xFF if worker[2:].isdigit() else os.getpid() & 0xFF


def unique_key() -> int:
    return TEST_KEY_BASE | run_tag() << 16 | _worker() << 8 | next(_counter) & 0xFF


def run_key_prefix() -> int:
    """The high 16 bits every key of this test run shares."""
    return (TEST_KEY_BASE | run_tag() << 16) >> 16


def run_name_prefix() -> str:
    return f"{TEST_NAME_PREFIX}{run_tag()}-"


def unique_name() -> str:
    return f"{run_name_prefix()}{_worker()}-{next(_counter)}"


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
