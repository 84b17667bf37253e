"""ipctool udp against a C sender/receiver pair and socat, measured side by side.

    .venv/bin/python bench/udp.py [--datagrams N] [--rounds N] [--pin] [--json FILE] [--quick]

1,000,000 datagrams of 64 bytes over loopback, each pair's receiver writing
them to a file (a newline after each), through these pairs:

  ipctool:          ipctool udp recv :PORT --lines --count N   and  ipctool udp send :PORT --lines
  ipctool, no C:    the same with IPCTOOL_NO_NATIVE=1 (udp's Python loops, no sendmmsg/recvmmsg)
  C:                bench/peers/udp_pair.c: recv, and send (one send() a datagram, as the lecture)
  socat:            socat -u -T1 UDP4-RECV:PORT STDOUT  and  socat -u -b 64 STDIN UDP4-SENDTO
  ipctool recv ← C send, C recv ← ipctool send: which end limits a pair

The receiver starts first and the sender once the port is bound (read from
/proc/net/udp, polled; the wait is part of the time). UDP loses what a
receiver cannot keep up with: a receiver ends once it has all N, or after one
idle second without a datagram (socat always ends that way); that second is
taken off the time, and the datagrams delivered are counted in its output. A
pair's time is then scaled to N datagrams at the rate it delivered (time *$
N / delivered), so every figure is a ratio of delivered datagrams per second;
loss is reported beside it. Target (issue 7): ipctool at least 0.8x the C
pair's rate, with no loss. Steady state: the same pairs moving 1/16 of the
datagrams in every round, subtracted. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import (
    IPCTOOL,
    Bench,
    BenchError,
    compile_c,
    kill_all,
    main,
    parser,
    tail,
    transfer_figures,
    wait_all,
)

PEER_SOURCE = Path(__file__).resolve().parent / "peers" / "udp_pair.c"
SIZE = 64  # bytes a datagram
SMALL = 16  # the steady-state baseline moves 1/SMALL of the datagrams
TARGET = 0.8  # ipctool's rate ÷ the C pair's, at least
IDLE = 1.0  # seconds without a datagram that end a receiver that lost some


@dataclass(frozen=True)
class Pair:
    """A receiver and a sender; "{port}" and "{count}" in their arguments are filled
    in. input: what the sender reads ("lines": 64 characters and a newline each;
    "records": 64-byte records for socat -b 64; None: it makes its own)."""

    receiver: list[str]
    sender: list[str]
    input: str | None
    env: dict[str, str] | None = None
    idle_ends: bool = False  # the receiver always ends by idling (socat)


def pairs(peer: str) -> dict[str, Pair]:
    ipctool_recv = [IPCTOOL, "udp", "recv", ":{port}", "--lines", "--count", "{count}"]
    ipctool_recv += ["--timeout", f"{IDLE:g}"]
    ipctool_send = [IPCTOOL, "udp", "send", ":{port}", "--lines"]
    c_recv = [peer, "recv", "{port}", "{count}", str(int(IDLE * 1000))]
    c_send = [peer, "send", "{port}", "{count}", str(SIZE)]
    return {
        "ipctool": Pair(ipctool_recv, ipctool_send, "lines"),
        "ipctool, no C": Pair(ipctool_recv, ipctool_send, "lines", {"IPCTOOL_NO_NATIVE": "1"}),
        "C": Pair(c_recv, c_send, None),
        "socat": Pair(
            ["socat", "-u", f"-T{IDLE:g}", "UDP4-RECV:{port},bind=127.0.0.1", "STDOUT"],
            ["socat", "-u", "-b", str(SIZE), "STDIN", "UDP4-SENDTO:127.0.0.1:{port}"],
            "records",
            idle_ends=True,
        ),
        "ipctool recv <- C send": Pair(ipctool_recv, c_send, None),
        "C recv <- ipctool send": Pair(c_recv, ipctool_send, "lines"),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bound(port: int) -> bool:
    """Whether a socket is bound to the port on loopback (/proc/net/udp: no probe)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        return any(line.split()[1] == wanted for line in f if len(line.split()) > 1)


def write_input(path: Path, count: int, kind: str) -> None:
    """count datagrams' worth: 64 digits and a newline each (lines), or 63 digits and
    a newline, 64 bytes in all (records: socat -b 64 sends each as it is)."""
    width = SIZE if kind == "lines" else SIZE - 1
    with path.open("wb") as out:
        for start in range(0, count, 100_000):
            stop = min(count, start + 100_000)
            out.write(b"".join(b"%0*d\n" % (width, i) for i in range(start, stop)))


class Runs:
    """Runs pairs and keeps what each delivered, per case."""

    def __init__(self, bench: Bench, inputs: dict[tuple[str, int], Path]) -> None:
        self.bench = bench
        self.inputs = inputs
        self.loss: dict[str, list[float]] = {}

    def run(
        self, pair: Pair, count: int, case: str | None = None, keep: Path | None = None
    ) -> float:
        """Seconds for `count` datagrams at the rate delivered (see the docstring)."""
        port = free_port()
        receiver = [filled(arg, port, count) for arg in pair.receiver]
        sender = [filled(arg, port, count) for arg in pair.sender]
        out = keep or self.bench.path("out")
        elapsed, codes = self.timed(receiver, sender, pair, count, out, port)
        delivered = lines_in(out)
        if not keep:
            out.unlink()
        if delivered == 0:
            raise BenchError(f"{case}: nothing was delivered ({codes})")
        if pair.idle_ends or delivered < count:
            elapsed -= IDLE
        if case is not None:
            self.loss.setdefault(case, []).append(1 - delivered / count)
        return elapsed * count / delivered

    def timed(
        self, receiver: list[str], sender: list[str], pair: Pair, count: int, out: Path, port: int
    ) -> tuple[float, list[int]]:
        env = {**os.environ, **(pair.env or {})}
        deadline = time.monotonic() + self.bench.args.timeout
        errors = [self.bench.path("stderr"), self.bench.path("stderr")]
        procs: list[subprocess.Popen[bytes]] = []
        source = self.inputs[pair.input, count] if pair.input else None
        try:
            with contextlib.ExitStack() as files:
                sink = files.enter_context(out.open("wb"))
                err = [files.enter_context(path.open("wb")) for path in errors]
                start = time.perf_counter()
                procs.append(popen(receiver, None, sink, err[0], env))
                while not bound(port):
                    if procs[0].poll() is not None or time.monotonic() > deadline:
                        raise BenchError(f"`{' '.join(receiver)}` never bound: {tail(errors[0])}")
                    time.sleep(0.0002)
                stdin = files.enter_context(source.open("rb")) if source else None
                procs.append(popen(sender, stdin, None, err[1], env))
                finished = wait_all(procs, deadline)
                elapsed = time.perf_counter() - start
        except BaseException:
            kill_all(procs)
            raise
        codes = [p.returncode for p in procs]
        # ipctool recv ends with 124 when the last datagrams were lost (its idle --timeout)
        if not finished or codes[1] != 0 or codes[0] not in (0, 124):
            raise BenchError(
                f"{' '.join(receiver)} (exit {codes[0]}: {tail(errors[0])}); "
                f"{' '.join(sender)} (exit {codes[1]}: {tail(errors[1])})"
            )
        for path in errors:
            path.unlink()
        return elapsed, codes


def filled(arg: str, port: int, count: int) -> str:
    return arg.replace("{port}", str(port)).replace("{count}", str(count))


def popen(argv: list[str], stdin: Any, stdout: Any, stderr: Any, env: dict[str, str]) -> Any:
    """A process in its own group (killed as one on failure)."""
    return subprocess.Popen(
        argv,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=stderr,
        env=env,
        start_new_session=True,
    )


def lines_in(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
    return count


def check_round_trips(runs: Runs, peer: str, count: int) -> None:
    """Untimed: ipctool delivers every datagram of a small batch, exactly and in
    order (with and without its C batches); the references deliver something."""
    for name, pair in pairs(peer).items():
        copy = runs.bench.path("copy")
        runs.run(pair, count, keep=copy)
        if pair.receiver[0] == IPCTOOL and pair.input == "lines":
            expected = runs.inputs["lines", count].read_bytes()
            if copy.read_bytes() != expected:
                raise BenchError(f"{name}: delivered wrong or missing datagrams")
        copy.unlink()


def body(bench: Bench) -> None:
    count = bench.args.datagrams or (200_000 if bench.args.quick else 1_000_000)
    peer = compile_c(PEER_SOURCE, bench.workdir)
    check = 2000
    inputs: dict[tuple[str, int], Path] = {}
    for amount in (count, count // SMALL, check):
        for kind in ("lines", "records"):
            inputs[kind, amount] = path = bench.path(kind)
            write_input(path, amount, kind)
    runs = Runs(bench, inputs)
    check_round_trips(runs, peer, check)

    cases: dict[str, Callable[[], float]] = {}
    for amount in (count, count // SMALL):
        for name, pair in pairs(peer).items():
            case = f"{name} {amount:,}"
            cases[case] = lambda p=pair, n=amount, c=case: runs.run(p, n, c)
    bench.measure(cases)
    figures = []
    for name, reference, target in (
        ("ipctool", "C", TARGET),
        ("ipctool", "socat", None),
        ("ipctool, no C", "C", None),
        ("ipctool recv <- C send", "C", None),
        ("C recv <- ipctool send", "C", None),
        ("socat", "C", None),
    ):
        figures += transfer_figures(
            f"{name} ÷ {reference}",
            f"{name} {count:,}",
            f"{reference} {count:,}",
            (f"{name} {count // SMALL:,}", f"{reference} {count // SMALL:,}"),
            speed=True,
            targets=(target, target),
            work=(count, count // SMALL),
            unit="dgram",
        )
    bench.report(
        "ipctool udp against C and socat (64-byte datagrams, loopback)", figures, notes(runs)
    )


def notes(runs: Runs) -> list[str]:
    lines = ["loss (datagrams sent but not delivered), per case: median, max over the rounds:"]
    for case, losses in sorted(runs.loss.items()):
        lines.append(f"  {case}: {statistics.median(losses):.2%}, max {max(losses):.2%}")
    lines.append(
        f"a receiver that lost datagrams ended after {IDLE:g} s without one; that second is "
        "taken off, and its time scaled to the count at the rate it delivered."
    )
    return lines


def arguments() -> argparse.ArgumentParser:
    args = parser(__doc__)
    args.add_argument(
        "--datagrams", type=int, metavar="N", help="default 1,000,000 (--quick 200,000)"
    )
    return args


if __name__ == "__main__":
    sys.exit(main(arguments(), body))
