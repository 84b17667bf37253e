"""Ctrl-C at any moment: right after a message arrives (a C peer hits that window
on purpose), and at every point of start-up."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import posix_ipc
import pytest
import sysv_ipc
from conftest import wait_until_blocked

import ipctool

# A receiver costs a whole ipctool start-up (~80 ms here); a hundred trials of
# one each would take long. This driver imports ipctool once and forks one real
# `ipctool msgq recv` (cli.main, as the console script runs it) per trial.
ZYGOTE = r"""
import os, sys
from ipctool import cli
from ipctool.registry import get_registry
import ipctool_plugins.msgq.commands, ipctool_plugins.msgq.sysv, ipctool_plugins.msgq.posix
get_registry()
for line in sys.stdin:
    words = line.split()
    if words[0] == "wait":
        _, status = os.waitpid(int(words[1]), 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
        continue
    cpu, out_path, err_path, *argv = words
    pid = os.fork()
    if pid == 0:
        os.sched_setaffinity(0, {int(cpu)})
        for fd, path in ((1, out_path), (2, err_path)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.argv = ["ipctool", *argv]
        try:
            cli.main()
        except SystemExit as done:
            os._exit(done.code if isinstance(done.code, int) else 1)
        os._exit(0)
    print(pid, flush=True)
"""


class Zygote:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def start(self, cpu: int, out: Path, err: Path, *argv: str) -> int:
        self.proc.stdin.write(f"{cpu} {out} {err} {' '.join(argv)}\n")
        return int(self.proc.stdout.readline())

    def exit_code(self, pid: int, within: float = 10) -> int | None:
        """The child's exit code, or None (it is then killed) if it did not end in time."""
        self.proc.stdin.write(f"wait {pid}\n")
        ended = select.select([self.proc.stdout], [], [], within)[0]
        if not ended:
            os.kill(pid, signal.SIGKILL)
        code = int(self.proc.stdout.readline())
        return code if ended else None

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


def drain_sysv(key: str) -> list[bytes]:
    queue, left = sysv_ipc.MessageQueue(int(key, 16)), []
    while True:
        try:
            left.append(queue.receive(False)[0])
        except sysv_ipc.BusyError:
            return left


def drain_posix(name: str) -> list[bytes]:
    queue, left = posix_ipc.MessageQueue(name), []
    queue.block = False
    try:
        while True:
            left.append(queue.receive()[0])
    except posix_ipc.BusyError:
        return left
    finally:
        queue.close()


TRIALS = 120  # per kind of queue
SPREAD_US = 300


@pytest.mark.parametrize("kind", ["sysv", "posix"])
def test_ctrl_c_just_after_a_message_ends_recv_and_loses_nothing(
    kind: str, sysv_key: str, posix_name: str, compile_peer, zygote: Zygote, tmp_path: Path
) -> None:
    """recv --follow is blocked; a message arrives and Ctrl-C follows N µs later.

    Whatever N, recv exits 130 with nothing on stderr, and each message is
    either printed or still in the queue: never both, never neither."""
    helper = compile_peer("send_then_interrupt.c")
    if kind == "sysv":
        target, drain = sysv_key, drain_sysv
        sysv_ipc.MessageQueue(int(sysv_key, 16), sysv_ipc.IPC_CREAT, 0o600)
    else:
        target, drain = posix_name, drain_posix
        posix_ipc.MessageQueue(posix_name, posix_ipc.O_CREAT, 0o600).close()
    out, err = tmp_path / "out", tmp_path / "err"
    # Receiver and sender on different CPUs, so the Ctrl-C lands while the
    # receiver runs; on one CPU it would mostly land before the receiver woke.
    cpus = sorted(os.sched_getaffinity(0))
    receiver_cpu, sender_cpu = cpus[0], cpus[-1]
    for trial in range(TRIALS):
        delay = trial * SPREAD_US / TRIALS
        message = f"m{trial}"
        pid = zygote.start(receiver_cpu, out, err, "msgq", "recv", target, "--follow", "--lines")
        wait_until_blocked(pid)
        subprocess.run(
            [helper, kind, target, str(pid), f"{delay:.1f}", message, str(sender_cpu)], check=True
        )
        code = zygote.exit_code(pid)
        printed = out.read_bytes().decode().split()
        left = [m.decode() for m in drain(target)]
        where = f"trial {trial}, Ctrl-C {delay:.1f} µs after the message"
        assert code is not None, f"{where}: recv went on waiting (Ctrl-C swallowed)"
        assert (code, err.read_text()) == (130, ""), where
        assert printed + left == [message], f"{where}: printed {printed}, left {left}"


ENTRY_POINTS = {
    "console script": [str(Path(sys.executable).with_name("ipctool"))],
    "python -m": [sys.executable, "-m", "ipctool"],
}
START_TRIALS = 20  # per entry point


def interrupt_after(argv: list[str], delay: float) -> tuple[int, bytes]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    until = time.monotonic() + delay
    while time.monotonic() < until:
        pass  # the delay is what the test varies; a sleep would overshoot it
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=30)[1]
    return proc.returncode, err


def before_ipctool_ran(code: int, err: bytes) -> bool:
    """A Ctrl-C the interpreter met before the first line of ipctool ran.

    Killed before Python had a handler; or Python's own start-up (site, the
    editable install's .pth, runpy, the console script's first lines) met the
    KeyboardInterrupt: a traceback with no frame of ipctool's, after which
    Python either gives up (exit 1, or dies by SIGINT) or, where site only
    reports an error in a .pth file, goes on and ipctool runs without ever
    knowing (then recv waits for its --timeout and exits 124).
    """
    package = str(Path(ipctool.__file__).parent) + "/"
    if code == -signal.SIGINT and not err:
        return True
    return b"KeyboardInterrupt" in err and package.encode() not in err


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_ctrl_c_at_any_moment_of_start_up(entry: str, sysv_key: str) -> None:
    """SIGINT at delays spread over the whole start-up, up to the moment recv
    blocks: from ipctool's first line on, exit 130 and nothing on stderr."""
    sysv_ipc.MessageQueue(int(sysv_key, 16), sysv_ipc.IPC_CREAT, 0o600)
    argv = [*ENTRY_POINTS[entry], "msgq", "recv", sysv_key, "--timeout"]
    start_up = 0.0
    for _ in range(2):  # how long until recv blocks, as loaded as the machine is now
        started = time.monotonic()
        proc = subprocess.Popen([*argv, "30"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_until_blocked(proc.pid)
        start_up = max(start_up, time.monotonic() - started)
        proc.send_signal(signal.SIGINT)
        assert (proc.wait(timeout=30), proc.stderr.read()) == (130, b"")
    wrong, guarded = [], 0
    for trial in range(START_TRIALS):
        delay = trial * 1.1 * start_up / START_TRIALS
        code, err = interrupt_after([*argv, "1"], delay)  # 1 s: see before_ipctool_ran
        if (code, err) == (130, b""):
            guarded += 1
        elif not before_ipctool_ran(code, err):
            wrong.append((f"{delay * 1000:.1f} ms", code, err.decode(errors="replace")[-400:]))
    assert not wrong, f"start-up took {start_up * 1000:.0f} ms: {wrong}"
    assert guarded >= 3, guarded  # not all before the guard: the test did test it
