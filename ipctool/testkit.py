"""Unique test targets for every mechanism: SysV keys, POSIX names, paths, ports.

A test run claims a tag (0-255) by creating its directory /tmp/ipctool-test-TAG
(mkdir either makes it or fails: two runs on one machine never get one tag; a
directory whose run has died is taken over). The tag is passed on through
IPCTOOL_TEST_TAG to pytest-xdist workers and to ipctool's children. Every
target carries the tag and the worker's number, so parallel workers never
meet, runs leave each other alone, and a run's leak check finds exactly what
that run left behind.
"""

from __future__ import annotations

import itertools
import os
import random
import shutil

TAG_ENV = "IPCTOOL_TEST_TAG"
# SysV keys: 0x7e, the run tag (8 bits), the worker (4 bits), a counter (12 bits).
TEST_KEY_BASE = 0x7E000000
COUNTER_BITS = 12
TEST_NAME_PREFIX = "/ipctool-test-"
TEST_DIR_PREFIX = "/tmp/ipctool-test-"
OWNER_FILE = "owner"  # the pid of the run that holds the tag
_counter = itertools.count(1)


class KitError(Exception):
    """The test kit cannot give what was asked (a bad tag, no free tag, keys used up)."""


def run_tag() -> int:
    """This run's tag, claimed on first use (see the module's docstring)."""
    value = os.environ.get(TAG_ENV)
    if value is None:
        value = str(claim_tag())
        os.environ[TAG_ENV] = value  # workers and children inherit it
    if not value.isdigit() or int(value) > 0xFF:
        raise KitError(f"{TAG_ENV} must be a number from 0 to 255, not {value!r}")
    return int(value)


def claim_tag() -> int:
    for tag in random.sample(range(256), 256):
        directory = f"{TEST_DIR_PREFIX}{tag}"
        if os.path.isdir(directory) and not owner_alive(directory):
            shutil.rmtree(directory, ignore_errors=True)  # a dead run's: take it over
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            continue  # another run holds it (or took it over first)
        with open(os.path.join(directory, OWNER_FILE), "w") as f:
            f.write(str(os.getpid()))
        return tag
    raise KitError("all 256 test run tags are in use")


def owner_alive(directory: str) -> bool:
    """Whether the run that claimed this directory still runs. One with no owner file
    yet is being claimed right now, unless it is old (a run that died at once)."""
    import time

    try:
        with open(os.path.join(directory, OWNER_FILE)) as f:
            os.kill(int(f.read()), 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        try:
            return time.time() - os.stat(directory).st_mtime < 60
        except OSError:
            return False
    return True


def release_tag() -> None:
    """At the end of the run that claimed it: remove the run's directory."""
    directory = f"{TEST_DIR_PREFIX}{run_tag()}"
    try:
        with open(os.path.join(directory, OWNER_FILE)) as f:
            mine = int(f.read()) == os.getpid()
    except (OSError, ValueError):
        return
    if mine:
        shutil.rmtree(directory, ignore_errors=True)


def worker() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    return int(name[2:]) & 0xF if name[2:].isdigit() else 0xF


def _next() -> int:
    count = next(_counter)
    if count >= 1 << COUNTER_BITS:
        raise KitError(f"more than {(1 << COUNTER_BITS) - 1} unique keys in one test process")
    return count


def unique_key() -> int:
    """A SysV key no other test of any run uses now."""
    return TEST_KEY_BASE | run_tag() << 16 | worker() << COUNTER_BITS | _next()


def run_key_prefix() -> int:
    """The high 16 bits every key of this test run shares."""
    return (TEST_KEY_BASE | run_tag() << 16) >> 16


def run_name_prefix() -> str:
    return f"{TEST_NAME_PREFIX}{run_tag()}-"


def unique_name() -> str:
    """A POSIX IPC name (/ipctool-test-TAG-WORKER-N)."""
    return f"{run_name_prefix()}{worker()}-{next(_counter)}"


def run_path_prefix() -> str:
    """What every unique_path() of this run starts with (a leak check looks for it)."""
    return f"{TEST_DIR_PREFIX}{run_tag()}-"


def unique_path(suffix: str = "") -> str:
    """A path nothing exists at yet, directly in /tmp (where a mechanism's listing of
    scratch directories finds it): /tmp/ipctool-test-TAG-WORKER-N."""
    return f"{run_path_prefix()}{worker()}-{next(_counter)}{suffix}"


def free_port(kind: str = "tcp") -> int:
    """A loopback port free right now (tcp or udp), for listeners under test."""
    import socket

    sock_type = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, sock_type) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
