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
    strict=True,
    reason="a signal is held until what was taken is written, and a reader that "
    "stalls holds the write: writes that a signal can end, putting back what they "
    "did not write, are not built yet (README: Signals)",
)


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="syscall numbers of x86_64")
@pytest.mark.parametrize(
    "native",
    [
        pytest.param(True, id="native", marks=STALLED_XFAIL),
        pytest.param(False, id="python", marks=STALLED_XFAIL),
    ],
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
            recv.wait(timeout=3)  # a safety net, not a timed assertion: it never ends
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


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
@pytest.mark.parametrize("ending", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_term_and_hup_lose_nothing_recv_took(
    sysv_key: str, native: bool, ending: int, tmp_path: Path
) -> None:
    """SIGTERM or SIGHUP to `recv --lines --follow` while a sender keeps the queue
    busy: every message is written or still in the queue, none lost. Each trial
    sends the signal once the output has grown past a different size (a moment
    chosen by a condition, not by a sleep)."""
    env = environ(native)
    lines = b"".join(b"%d\n" % i for i in range(200_000))
    for trial, threshold in enumerate((1_000, 40_000, 150_000)):
        queue = sysv_ipc.MessageQueue(int(sysv_key, 16), sysv_ipc.IPC_CREX, 0o600)
        out_path = tmp_path / f"out{trial}"
        try:
            with open(out_path, "wb") as out:
                recv = subprocess.Popen(
                    [*IPCTOOL, "msgq", "recv", sysv_key, "--lines", "--follow"],
                    stdout=out, stderr=subprocess.PIPE, env=env,
                )  # fmt: skip
            send = subprocess.Popen(
                [*IPCTOOL, "msgq", "send", sysv_key, "--lines"],
                stdin=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            )  # fmt: skip
            send.stdin.write(lines)  # type: ignore[union-attr]
            send.stdin.close()  # type: ignore[union-attr]
            while out_path.stat().st_size < threshold and recv.poll() is None:
                time.sleep(0.0005)  # polls the condition: the output has grown
            recv.send_signal(ending)
            err = recv.communicate(timeout=30)[1]
            assert recv.returncode == 128 + ending, err
            assert b"Traceback" not in err
            left = []  # what recv left, and what the sender still sends
            while True:
                try:
                    left.append(queue.receive(False)[0])
                except sysv_ipc.BusyError:
                    if send.poll() is not None:
                        break
                    time.sleep(0.0005)  # polls the condition: more sent, or sender done
            written = out_path.read_bytes().split(b"\n")[:-1]
            numbers = [int(x) for x in written + left]
            assert sorted(numbers) == list(range(200_000)), (
                f"trial {trial}: {200_000 - len(set(numbers))} lost, "
                f"{len(numbers) - len(set(numbers))} duplicated"
            )
        finally:
            with contextlib.suppress(sysv_ipc.ExistentialError):
                queue.remove()


@pytest.mark.parametrize("native", [True, False], ids=["native", "python"])
def test_a_message_msg_qbytes_was_lowered_below_is_too_large_not_a_wait(
    ipctool_key: str, native: bool
) -> None:
    """The sender waits for room for its second message; meanwhile an admin lowers
    msg_qbytes below that message's size. Once the queue is empty it can never
    fit (msgsnd would sleep forever): exit 7, naming the queue's limit."""
    key = int(ipctool_key, 0)
    queue = sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREX, 0o600, 8192)  # receive()s buffer
    queue.max_size = 10_000  # msg_qbytes: room for one message of 6000 bytes, not two
    try:
        sender = subprocess.Popen(
            [*IPCTOOL, "msgq", "send", ipctool_key, "--null"],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=environ(native),
        )  # fmt: skip
        assert sender.stdin is not None
        sender.stdin.write(b"a" * 6000 + b"\0" + b"b" * 6000 + b"\0")
        sender.stdin.close()
        while queue.current_messages == 0:  # the first is in: the second waits for room
            time.sleep(0.001)
        queue.max_size = 5000  # as root: lower than the second message
        assert queue.receive()[0] == b"a" * 6000  # now empty, and still no room
        sender.wait(timeout=30)  # a bound on the bug's wait, not a speed
        assert sender.stderr is not None
        err = sender.stderr.read().decode()
        assert sender.returncode == 7, err
        assert "5000" in err and err.count("\n") == 1, err
        assert queue.current_messages == 0
    finally:
        with contextlib.suppress(NameError):
            if sender.poll() is None:
                sender.kill()
                sender.wait()
        queue.remove()
