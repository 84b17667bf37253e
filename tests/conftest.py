"""Shared fixtures: unique kernel objects that are removed even when a test fails,
C peers compiled from tests/peers, and a leak check over the whole run."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipctool.testing import Result, run
from ipctool.testkit import unique_key, unique_name
from ipctool_plugins.msgq.testing import remove_posix, remove_sysv

# The run tag, the leak check (ipctool_leak_check in pyproject.toml) and the
# contract fixtures come from ipctool's own pytest plugin (ipctool/pytest_plugin.py).
PEERS = Path(__file__).parent / "peers"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def sysv_key() -> Iterator[str]:
    """A SysV key (as 0x-hex) no other test uses; its queue is removed afterwards."""
    key = hex(unique_key())
    yield key
    remove_sysv(key)


@pytest.fixture
def posix_name() -> Iterator[str]:
    name = unique_name()
    yield name
    remove_posix(name)


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


def sysv_keys_present() -> set[int]:
    with open("/proc/sysvipc/msg") as f:
        next(f)
        return {int(line.split()[0]) & 0xFFFFFFFF for line in f}


__all__ = ["run", "run_as_nobody"]
