"""Shared fixtures: unique kernel objects that are removed even when a test fails,
C peers compiled from tests/peers, and a leak check over the whole run."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from ipctool.testing import Result, run
from ipctool.testkit import unique_key, unique_name
from ipctool_plugins.msgq import testing as msgq
from ipctool_plugins.sem import testing as sem
from ipctool_plugins.shm import testing as shm

# No per-example deadline: on a loaded 2-core machine an example's time says
# nothing about the code (a timed assertion in all but name), and the suite
# measures no speed (bench/ does).
settings.register_profile("ipctool", deadline=None)
settings.load_profile("ipctool")

# The run tag, the leak check (ipctool_leak_check in pyproject.toml) and the
# contract fixtures come from ipctool's own pytest plugin (ipctool/pytest_plugin.py).
PEERS = Path(__file__).parent / "peers"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def remove_sysv(key: str) -> None:
    """Whatever queue, semaphore set or segment is on this key (nothing if none)."""
    for mechanism in (msgq, sem, shm):
        mechanism.remove_sysv(key)


def remove_posix(name: str) -> None:
    """Whatever queue, semaphore or shared memory object has this name."""
    for mechanism in (msgq, sem, shm):
        mechanism.remove_posix(name)


@pytest.fixture
def sysv_key() -> Iterator[str]:
    """A SysV key (as 0x-hex) no other test uses; what a test made on it is removed
    afterwards."""
    key = hex(unique_key())
    yield key
    remove_sysv(key)


@pytest.fixture
def posix_name() -> Iterator[str]:
    name = unique_name()
    yield name
    remove_posix(name)


@pytest.fixture(params=["sysv", "posix"])
def target(request: pytest.FixtureRequest) -> str:
    """A unique target of either kind (sysv_key, posix_name), removed afterwards."""
    return str(request.getfixturevalue("sysv_key" if request.param == "sysv" else "posix_name"))


@pytest.fixture(scope="session")
def compile_peer(tmp_path_factory: pytest.TempPathFactory):
    """compile_peer("msgq_sender.c", IPCTOOL_TEST_KEY="0x...") -> path of the binary."""
    if not shutil.which("gcc"):
        pytest.fail("gcc is needed for the C peers (.ci/run installs it)")
    out = tmp_path_factory.mktemp("peers")

    def build(source: str, **defines: str) -> Path:
        tag = hashlib.sha1(repr(sorted(defines.items())).encode()).hexdigest()[:12]
        binary = out / f"{source.removesuffix('.c')}-{tag}"
        flags = [f"-D{k}={v}" for k, v in defines.items()]
        subprocess.run(["gcc", "-O2", *flags, "-o", str(binary), str(PEERS / source)], check=True)
        return binary

    return build


def run_as_nobody(*args: str, input: bytes = b"") -> Result:
    """ipctool as the unprivileged user nobody (for permission cases)."""
    import sys

    done = subprocess.run(
        [*NOBODY, sys.executable, "-m", "ipctool", *args],
        input=input,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


# Syscall numbers of the calls where a process waits for an IPC object.
SYSCALLS = {
    "x86_64": {
        "msgsnd": 69, "msgrcv": 70, "mq_timedsend": 242, "mq_timedreceive": 243,
        "poll": 7, "ppoll": 271, "openat": 257, "read": 0, "write": 1, "splice": 275,
    },
    "aarch64": {
        "msgsnd": 189, "msgrcv": 188, "mq_timedsend": 182, "mq_timedreceive": 183,
        "ppoll": 73, "openat": 56, "read": 63, "write": 64, "splice": 76,
    },
}  # fmt: skip
WAITS = ("msgsnd", "msgrcv", "mq_timedsend", "mq_timedreceive", "poll", "ppoll")


def wait_until_blocked(pid: int, calls: tuple[str, ...] = WAITS) -> None:
    """Until the process sleeps in one of these system calls (not still starting up):
    /proc/PID/syscall names the call a sleeping process is in. Polls every ms."""
    import time

    table = SYSCALLS.get(os.uname().machine)
    if table is None:
        pytest.fail(f"no syscall table for {os.uname().machine}")
    numbers = {table[c] for c in calls if c in table}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()[0]
        if first.isdigit() and int(first) in numbers:
            return
        time.sleep(0.001)
    raise AssertionError(f"pid {pid} never blocked in {calls}")


def sysv_keys_present() -> set[int]:
    with open("/proc/sysvipc/msg") as f:
        next(f)
        return {int(line.split()[0]) & 0xFFFFFFFF for line in f}


__all__ = ["run", "run_as_nobody"]
