"""Hostile cases for SysV msgq send/recv that fail today (each marked xfail, strict)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sysv_ipc

IPCTOOL = [sys.executable, "-m", "ipctool"]
WRITES = {1, 20}  # x86_64 write, writev


def wait_in_write(pid: int) -> None:
    """Until the process sleeps in write/writev (polls a condition, every ms)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()[0]
        if first.isdigit() and int(first) in WRITES:
            return
        time.sleep(0.001)
    raise AssertionError(f"pid {pid} never blocked in write")


def environ(native: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("IPCTOOL_NO_NATIVE", None)
    if not native:
        env["IPCTOOL_NO_NATIVE"] = "1"
    return env


STALLED_XFAIL = pytest.mark.xfail(
    strict=True, reason="the native stream loop retries EINTR writes: SIGTERM ignored"
)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64")
@pytest.mark.parametrize(
    "native",
    [pytest.param(True, id="native", marks=STALLED_XFAIL), pytest.param(False, id="python")],
)
def test_term_ends_stream_recv_with_stalled_stdout(
    ipctool_key: str, native: bool, tmp_path: Path
) -> None:
    data = tmp_path / "in"
    data.write_bytes(os.urandom(300 << 10))
    read_end, write_end = os.pipe()  # held open, never read
    env = environ(native)
    recv = subprocess.Popen(
        [*IPCTOOL, "msgq", "recv", ipctool_key, "--stream", "--create"],
        stdout=write_end, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(write_end)
    try:
        while True:  # the receiver made the queue
            try:
                queue = sysv_ipc.MessageQueue(int(ipctool_key, 16))
                break
            except sysv_ipc.ExistentialError:
                time.sleep(0.001)
        with open(data, "rb") as stdin:
            send = subprocess.Popen(
                [*IPCTOOL, "msgq", "send", ipctool_key, "--stream"],
                stdin=stdin, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        wait_in_write(recv.pid)
        recv.send_signal(signal.SIGTERM)
        try:
            recv.wait(timeout=10)  # a safety net, not a timed assertion: it never ends
        except subprocess.TimeoutExpired:
            recv.kill()
            recv.wait()
        send.kill()
        send.wait()
        assert recv.returncode == 143
    finally:
        os.close(read_end)
        recv.stderr.close()  # type: ignore[union-attr]
        with contextlib.suppress(NameError, sysv_ipc.ExistentialError):
            queue.remove()
