"""Unique test targets for every mechanism: SysV keys, POSIX names, paths, ports.

Every target carries the run's tag (IPCTOOL_TEST_TAG, one per test run and
inherited by pytest-xdist workers) and the worker's number, so parallel
workers never meet, two test runs on one machine leave each other alone, and
a run's leak check finds exactly what this run left behind.
"""

from __future__ import annotations

import itertools
import os
import random

TAG_ENV = "IPCTOOL_TEST_TAG"
TEST_KEY_BASE = 0x7E000000  # keys are 0x7e, the run tag, the worker, a counter (8 bits each)
TEST_NAME_PREFIX = "/ipctool-test-"
TEST_DIR_PREFIX = "/tmp/ipctool-test-"
_counter = itertools.count(1)


def run_tag() -> int:
    if TAG_ENV not in os.environ:
        os.environ[TAG_ENV] = str(random.randrange(256))  # children and workers inherit it
    return int(os.environ[TAG_ENV]) & 0xFF


def worker() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    return int(name[2:]) & 0xFF if name[2:].isdigit() else os.getpid() & 0xFF


def unique_key() -> int:
    """A SysV key no other test of any run uses now."""
    return TEST_KEY_BASE | run_tag() << 16 | worker() << 8 | next(_counter) & 0xFF


def run_key_prefix() -> int:
    """The high 16 bits every key of this test run shares."""
    return (TEST_KEY_BASE | run_tag() << 16) >> 16


def run_name_prefix() -> str:
    return f"{TEST_NAME_PREFIX}{run_tag()}-"


def unique_name() -> str:
    """A POSIX IPC name (/ipctool-test-TAG-WORKER-N)."""
    return f"{run_name_prefix()}{worker()}-{next(_counter)}"


def run_dir() -> str:
    """This run's directory for paths (FIFOs, sockets, files): /tmp/ipctool-test-TAG."""
    path = f"{TEST_DIR_PREFIX}{run_tag()}"
    os.makedirs(path, mode=0o755, exist_ok=True)
    return path


def unique_path(suffix: str = "") -> str:
    """A path nothing exists at yet, in this run's directory."""
    return os.path.join(run_dir(), f"{worker()}-{next(_counter)}{suffix}")


def free_port(kind: str = "tcp") -> int:
    """A loopback port free right now (tcp or udp), for listeners under test."""
    import socket

    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
