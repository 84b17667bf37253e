"""Ctrl-C microseconds after bytes arrive, on each way fifo recv and send move them:
every byte that left the source reached the destination or is still in the source.

A C peer (peers/write_then_interrupt.c) writes a burst, spins DELAY µs and sends
SIGINT, so that Ctrl-Cs land while ipctool wakes, between a read and the write
of what it read, as EOF follows, and during the clean-up. In half the trials a
few bytes have gone through first (the relay waits in its loop); in the others
the burst is the first data (the relay starts on it: a slower path, swept with
longer delays). Which way relay.py moves bytes depends on the pair of ends and
on the kernel:

- recv (FIFO to stdout): splice to a pipe, a file, a terminal (where the kernel
  splices to one); read/write to a file opened O_APPEND (`>> log`: splice refuses it).
- send (stdin to FIFO): splice from a pipe, or from a terminal where the kernel
  splices from one. sendfile needs a regular file as the source, which splices
  into a FIFO already: fifo never reaches it.
- read/write for the other common ends (a terminal, a pipe) where the kernel
  cannot splice the pair. To reach it here too, those cases run ipctool with
  os.splice answering EINVAL, as such a kernel does before anything moved
  (ZYGOTE's "splice": false); nothing in ipctool is changed for the test.
"""

from __future__ import annotations

import array
import fcntl
import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import termios
import tty
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import wait_until_blocked

from ipctool.testing import unique_path, until
from ipctool_plugins.fifo.testing import remove_fifo

# One ipctool start-up per trial would take most of the time: this driver imports
# ipctool once and forks one real `ipctool fifo ...` (cli.main, as the console
# script runs it) per trial, with the stdin, stdout, stderr and ready fd it is sent.
ZYGOTE = r"""
import errno, gc, json, os, socket, sys, traceback
from ipctool import cli
from ipctool.registry import get_registry
import ipctool_plugins.fifo.commands
import ipctool.interrupts, ipctool.system, ipctool.waiting  # what the verb imports when needed
get_registry()


def refused(*args, **kwargs):
    raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


def run(order, fds, channel):
    channel.close()
    os.sched_setaffinity(0, {order["cpu"]})
    for target, fd in enumerate(fds):  # received fds are above 2: no clash
        os.dup2(fd, target)
    for fd in set(fds) - set(range(len(fds))):
        os.close(fd)
    if not order["splice"]:
        os.splice = refused  # as a kernel that cannot splice this pair answers
    sys.argv = ["ipctool", *order["argv"]]
    code = 0
    try:
        cli.main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


channel = socket.socket(fileno=int(sys.argv[1]))
gc.freeze()  # a child's collections would touch, so copy, every page of this heap
while True:
    message, fds, _, _ = socket.recv_fds(channel, 4096, 8)
    if not message:
        break
    order = json.loads(message)
    if "wait" in order:
        _, status = os.waitpid(order["wait"], 0)
        channel.send(str(os.waitstatus_to_exitcode(status)).encode())
        continue
    pid = os.fork()
    if pid == 0:
        run(order, fds, channel)
    for fd in fds:
        os.close(fd)
    channel.send(str(pid).encode())
"""


class Zygote:
    def __init__(self) -> None:
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()

    def start(self, cpu: int, argv: list[str], fds: list[int], splice: bool) -> int:
        """`ipctool ARGV` with fds as its 0, 1, 2, 3..., on one CPU."""
        order = json.dumps({"cpu": cpu, "argv": argv, "splice": splice}).encode()
        socket.send_fds(self.channel, [order], fds)
        return int(self.channel.recv(64))

    def exit_code(self, pid: int, within: float = 10) -> int | None:
        """The child's exit code, or None (it is then killed) if it did not end in time."""
        self.channel.send(json.dumps({"wait": pid}).encode())
        ended = select.select([self.channel], [], [], within)[0]
        if not ended:
            os.kill(pid, signal.SIGKILL)
        code = int(self.channel.recv(64))
        return code if ended else None

    def close(self) -> None:
        self.channel.send(b"")
        self.channel.close()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    yield z
    z.close()


def drain(fd: int) -> bytes:
    """Everything readable from fd now, without waiting (to EAGAIN or EOF)."""
    os.set_blocking(fd, False)
    parts = []
    while True:
        try:
            part = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not part:
            break
        parts.append(part)
    return b"".join(parts)


def held(fd: int) -> int:
    """Bytes waiting in a pipe or terminal (FIONREAD), or a regular file's size."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def read_line(fd: int, within: float = 10) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        assert select.select([fd], [], [], within)[0], "ipctool was never ready"
        part = os.read(fd, 4096)
        assert part, "ipctool closed its ready fd without a line"
        line += part
    return line


def terminal() -> tuple[int, int]:
    """(master, slave) of a new pty, raw: bytes pass unchanged, ^C is just a byte."""
    master, slave = os.openpty()
    tty.setraw(slave)
    return master, slave


class Ends:
    """ipctool's stdio for one trial and the test's side of each; all closed after."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fds: list[int] = []

    def keep(self, *fds: int) -> None:
        self.fds += fds

    def let_go(self, fd: int) -> None:
        self.fds.remove(fd)
        os.close(fd)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)

    def open(self, path: str | Path, flags: int) -> int:
        fd = os.open(path, flags, 0o600)
        self.keep(fd)
        return fd

    def stdout(self, kind: str) -> tuple[int, int]:
        """(ipctool's stdout, the test's side: where what arrived is read, from 0)."""
        if kind in ("file", "append"):
            append = os.O_APPEND if kind == "append" else 0
            theirs = self.open(self.tmp / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | append)
            return theirs, self.open(self.tmp / "out", os.O_RDONLY)
        ours, theirs = os.pipe() if kind == "pipe" else terminal()
        # The test holds theirs too: read once ipctool has ended, a terminal's
        # master then says EAGAIN after the last byte, not EIO.
        self.keep(ours, theirs)
        return theirs, ours

    def stdin(self, kind: str) -> tuple[int, int]:
        """(ipctool's stdin, where the bytes are written); what is left is read from the first."""
        theirs, feed = os.pipe() if kind == "pipe" else terminal()[::-1]
        self.keep(theirs, feed)
        return theirs, feed


@dataclass(frozen=True)
class Case:
    verb: str  # recv (FIFO to stdout) or send (stdin to FIFO)
    end: str  # stdout's kind for recv, stdin's for send
    splice: bool = True  # False: os.splice refuses, as a kernel without it for the pair
    modes: tuple[str, ...] = ("hold", "close")  # the writer's end stays open, or EOF

    def __str__(self) -> str:
        way = "splice" if self.splice and self.end != "append" else "copy"
        return f"{self.verb}-{self.end}-{way}"


CASES = [
    Case("recv", "pipe"),
    Case("recv", "file"),
    Case("recv", "tty"),
    Case("recv", "append"),  # read/write for real: splice refuses O_APPEND
    Case("recv", "tty", splice=False),
    Case("recv", "pipe", splice=False),
    Case("send", "pipe"),
    Case("send", "tty", modes=("hold",)),  # closing a pty's master hangs it up (drops input)
    Case("send", "pipe", splice=False),
    Case("send", "tty", splice=False, modes=("hold",)),
]
# µs from the burst to the Ctrl-C: with the relay waiting in its loop, it moves the
# burst within tens of µs; starting on the burst takes one to a few ms (a forked
# child's first run of that code copies the pages it touches).
IN_LOOP_US = (0, 1, 2, 5, 10, 20, 50, 100, 200)
AT_START_US = (0, 300, 600, 900, 1200, 1600, 2000, 3000)
REPEATS = 2  # per delay, over the case's modes
PRIMER = b"first bytes\n"
BURST = 8 << 10  # a pipe and a pty take it all at once (64 KiB; 11 to 17 KiB): no reader needed


@dataclass
class Trial:
    mode: str
    code: int | None
    err: str
    data: bytes
    arrived: bytes
    left: bytes
    fifo_left_behind: bool

    def outcome(self) -> str:
        """What happened, or what is wrong (starting with "WRONG")."""
        if self.code is None:
            return "WRONG: still running after the Ctrl-C"
        if self.err:
            return f"WRONG: stderr {self.err[-300:]!r}"
        if self.arrived + self.left != self.data:
            return (
                f"WRONG: {len(self.data)} bytes written, {len(self.arrived)} arrived, "
                f"{len(self.left)} left in the source, and they are not the data"
            )
        if self.fifo_left_behind:
            return "WRONG: the FIFO it made was left behind"
        expected = (130,) if self.mode == "hold" else (0, 130)  # close: EOF may come first
        if self.code not in expected or (self.code == 0 and self.left):
            return f"WRONG: exit {self.code} with {len(self.left)} bytes unread"
        if self.code == 0:
            return "0 (EOF first)"
        return "130, " + (
            "all moved" if not self.left else "some left" if self.arrived else "none moved"
        )


class Sweep:
    def __init__(self, zygote: Zygote, helper: Path, tmp: Path) -> None:
        self.zygote, self.helper, self.tmp = zygote, helper, tmp
        # ipctool and the helper on different CPUs, so that the Ctrl-C lands while
        # ipctool runs; on one CPU it would mostly land before ipctool woke.
        cpus = sorted(os.sched_getaffinity(0))
        self.ipctool_cpu, self.helper_cpu = cpus[0], cpus[-1]
        self.running: int | None = None  # an ipctool not yet waited for

    def trial(self, case: Case, delay: float, mode: str, primed: bool) -> Trial:
        burst = os.urandom(BURST)
        (self.tmp / "burst").write_bytes(burst)
        path = unique_path(".fifo")
        ends = Ends(self.tmp)
        try:
            err = ends.open(self.tmp / "err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            if case.verb == "recv":
                theirs, arrived = ends.stdout(case.end)
                stdin = ends.open(os.devnull, os.O_RDONLY)
                pid = self.start(case, path, [stdin, theirs, err])
                source = ends.open(path, os.O_RDONLY | os.O_NONBLOCK)  # what recv did not take
                feed = ends.open(path, os.O_WRONLY | os.O_NONBLOCK)
            else:
                source, feed = ends.stdin(case.end)
                stdout = ends.open(os.devnull, os.O_WRONLY)
                pid = self.start(case, path, [source, stdout, err])
                arrived = ends.open(path, os.O_RDONLY | os.O_NONBLOCK)
                until(lambda: writes_to(pid, path), what=f"send {pid} opened the FIFO")
            wait_until_blocked(pid, ("poll", "ppoll"))  # asleep until bytes come
            data = burst
            if primed:  # through the relay and back to waiting in its loop
                os.write(feed, PRIMER)
                until(lambda: held(arrived) == len(PRIMER), what="the first bytes arrived")
                wait_until_blocked(pid, ("poll", "ppoll"))
                data = PRIMER + burst
            self.write_then_interrupt(ends, feed, pid, delay, mode)
            code = self.zygote.exit_code(pid)
            self.running = None
            return Trial(
                mode, code, (self.tmp / "err").read_text(), data, drain(arrived),
                drain(source), os.path.lexists(path),
            )  # fmt: skip
        finally:
            if self.running:  # the trial failed: end it before closing its ends
                os.kill(self.running, signal.SIGKILL)
                self.zygote.exit_code(self.running)
                self.running = None
            ends.close()
            remove_fifo(path)

    def start(self, case: Case, path: str, stdio: list[int]) -> int:
        """ipctool fifo VERB PATH, once it made and opened the FIFO (its ready line)."""
        ready, ready_w = os.pipe()
        try:
            argv = ["fifo", case.verb, path, "--ready-fd", "3"]
            pid = self.zygote.start(self.ipctool_cpu, argv, [*stdio, ready_w], case.splice)
            self.running = pid
            os.close(ready_w)
            read_line(ready)
        finally:
            os.close(ready)
        return pid

    def write_then_interrupt(
        self, ends: Ends, feed: int, pid: int, delay: float, mode: str
    ) -> None:
        helper = subprocess.Popen(
            [self.helper, str(feed), str(self.tmp / "burst"), str(pid), f"{delay:g}", mode,
             str(self.helper_cpu)],
            stdin=subprocess.PIPE,
            pass_fds=(feed,),
        )  # fmt: skip
        if mode == "close":
            ends.let_go(feed)  # the helper's copy is then the only writer: its close is EOF
        helper.communicate(b"g", timeout=10)
        assert helper.returncode == 0


def writes_to(pid: int, path: str) -> bool:
    """Whether pid has path open for writing, by /proc (reading the FIFO to find
    out could wait for the pipe's lock)."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != path:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = next(line for line in info if line.startswith("flags:")).split()[1]
        except FileNotFoundError:  # closed meanwhile
            continue
        if int(flags, 8) & os.O_ACCMODE == os.O_WRONLY:
            return True
    return False


@pytest.mark.parametrize("case", CASES, ids=str)
def test_ctrl_c_just_after_bytes_arrive_loses_nothing(
    case: Case, compile_peer, zygote: Zygote, tmp_path: Path
) -> None:
    """A burst arrives, Ctrl-C follows DELAY µs later. Whatever DELAY: no traceback,
    nothing on stderr, the FIFO ipctool made is removed, and what arrived followed
    by what is still in the source is exactly what was written. Exit 130; with the
    writer's end closed after the burst, 0 too, if EOF came first (nothing left)."""
    sweep = Sweep(zygote, compile_peer("write_then_interrupt.c"), tmp_path)
    outcomes: dict[str, Counter[str]] = {}
    for primed, delays in ((True, IN_LOOP_US), (False, AT_START_US)):
        for delay in delays:
            for repeat in range(REPEATS):
                mode = case.modes[repeat % len(case.modes)]
                trial = sweep.trial(case, delay, mode, primed)
                row = f"{'in loop' if primed else 'at start'} {delay:>5g} µs"
                outcomes.setdefault(row, Counter())[trial.outcome()] += 1
    table = "\n".join(f"{row}: {dict(c)}" for row, c in outcomes.items())
    print(f"\n{case}\n{table}")
    assert not any(o.startswith("WRONG") for c in outcomes.values() for o in c), table
