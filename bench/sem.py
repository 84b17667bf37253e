"""ipctool sem against C semop programs, measured side by side.

    .venv/bin/python bench/sem.py [--round-trips N] [--rounds N] [--pin] [--json FILE] [--quick]

  (1) round trips between two processes on two SysV semaphores A and B: one end
      posts A then waits on B, the other waits on A then posts B.
        ipctool loops:  two shell loops, `ipctool sem send A; ipctool sem recv B`
                        and `ipctool sem recv A; ipctool sem send B` (ipctool is
                        a one-shot command: one process per post or wait)
        C pair:         bench/peers/sem_pair.c ping and pong, two processes making
                        every semop themselves
        C one-shots:    the same shell loops running `sem_pair send|recv`, one C
                        process per post or wait: process start on both sides,
                        the fair comparison for a command-line tool
      Figures: a round trip's time, case ÷ reference (lower is better), printed
      beside both rates in round trips per second.
  (2) one call: `ipctool sem recv K` finding its semaphore at 1, from spawn to
      exit, against `sem_pair recv K` (the C one-shot) and `python -c "import
      typer"` (target: at most 1.3x; timed as bench/startup.py times it).

--round-trips N (default 20, --quick 5) is the ipctool loops' count; the C
one-shot loops make 10x as many and the C pair 10,000x; every time is per round
trip, so the counts need not match. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path

import sysv_ipc
from harness import IPCTOOL, PYTHON, Bench, BenchError, Figure, Proc, compile_c, main, parser
from msgq import Queues
from startup import sem_recv_one

PEER_SOURCE = Path(__file__).resolve().parent / "peers" / "sem_pair.c"
TYPER_TARGET = 1.3  # one-shot recv time ÷ `import typer` time, at most
ONE_SHOT_SCALE = 10  # round trips of the C one-shot loops per ipctool round trip
PAIR_SCALE = 10_000  # and of the C pair

# The two ends of a loop: $SEM is the command prefix (`ipctool sem` or `sem_pair`).
PING = 'i=0; while [ $i -lt "$N" ]; do $SEM send "$A" && $SEM recv "$B" || exit 1; i=$((i+1)); done'
PONG = 'i=0; while [ $i -lt "$N" ]; do $SEM recv "$A" && $SEM send "$B" || exit 1; i=$((i+1)); done'

LOOPS, PAIR, ONE_SHOTS = "ipctool loops", "C pair", "C one-shots"
RECV, C_RECV, TYPER = "ipctool sem recv K", "sem_pair recv K", 'python -c "import typer"'

# Keys 0x5c<pid 16 bits><counter 8 bits>: this run's own, never a test run's (0x7e...).
_keys = (0x5C000000 | (os.getpid() & 0xFFFF) << 8 | n & 0xFF for n in itertools.count(1))


class Sets:
    """Fresh one-element SysV sets at 0; whatever is left is removed at exit."""

    def __init__(self) -> None:
        self.live: set[int] = set()

    def new(self) -> int:
        for _ in range(256):
            key = next(_keys)
            try:
                sysv_ipc.Semaphore(key, sysv_ipc.IPC_CREX, 0o600, 0)
            except sysv_ipc.ExistentialError:
                continue  # someone else's: leave it alone
            self.live.add(key)
            return key
        raise BenchError("no free SysV key left in this run's range")

    def finish(self, key: int) -> None:
        """After a run: every post was taken, so the value is back at 0."""
        left = sysv_ipc.Semaphore(key).value
        self.remove(key)
        if left:
            raise BenchError(f"semaphore {key:#x} was left at {left}")

    def remove(self, key: int) -> None:
        with contextlib.suppress(sysv_ipc.ExistentialError):
            sysv_ipc.Semaphore(key).remove()
        self.live.discard(key)

    def remove_all(self) -> None:
        for key in list(self.live):
            self.remove(key)


RoundTrips = Callable[[Bench, int], float]  # seconds per round trip, for a count


def shell_loops(prefix: list[str], sets: Sets) -> RoundTrips:
    def run(bench: Bench, count: int) -> float:
        a, b = sets.new(), sets.new()
        env = {"SEM": " ".join(prefix), "A": str(a), "B": str(b), "N": str(count)}
        elapsed = bench.run(Proc(["sh", "-c", PONG], env=env), Proc(["sh", "-c", PING], env=env))
        sets.finish(a)
        sets.finish(b)
        return elapsed / count

    return run


def c_pair(peer: str, sets: Sets) -> RoundTrips:
    def run(bench: Bench, count: int) -> float:
        a, b = sets.new(), sets.new()
        ends = [[peer, side, str(a), str(b), str(count)] for side in ("pong", "ping")]
        elapsed = bench.run(*(Proc(argv) for argv in ends))
        sets.finish(a)
        sets.finish(b)
        return elapsed / count

    return run


def rate_figure(case: str, reference: str) -> Figure:
    """A round trip's time, case ÷ reference (how many times longer), printed beside
    both rates: ipctool's speed ratios would round to 0.00x."""
    return Figure(f"(1) {case} ÷ {reference}", case, reference, work=1.0, unit="round trips")


def body(bench: Bench) -> None:
    trips = bench.args.round_trips or (5 if bench.args.quick else 20)
    if trips < 1:
        raise BenchError("--round-trips: at least 1")
    sets, queues = Sets(), Queues()
    bench.at_exit(sets.remove_all)
    bench.at_exit(queues.remove_all)
    peer = compile_c(PEER_SOURCE, bench.workdir)
    loops: dict[str, tuple[RoundTrips, int]] = {
        LOOPS: (shell_loops([IPCTOOL, "sem"], sets), trips),
        ONE_SHOTS: (shell_loops([peer], sets), trips * ONE_SHOT_SCALE),
        PAIR: (c_pair(peer, sets), trips * PAIR_SCALE),
    }
    calls: dict[str, Callable[[], float]] = {
        RECV: lambda: sem_recv_one(bench, queues),
        C_RECV: lambda: sem_recv_one(bench, queues, lambda key: [peer, "recv", str(key)]),
        TYPER: lambda: bench.run(Proc([PYTHON, "-c", "import typer"])),
    }
    for loop, _ in loops.values():  # untimed: each works, and leaves both values at 0
        loop(bench, 3)
    for call in calls.values():  # the bytecode cache fills here too
        call()

    cases = {name: (lambda loop=loop, n=n: loop(bench, n)) for name, (loop, n) in loops.items()}
    bench.measure({**cases, **calls})
    bench.report(
        "ipctool sem against C semop programs",
        [
            rate_figure(LOOPS, PAIR),
            rate_figure(LOOPS, ONE_SHOTS),
            rate_figure(ONE_SHOTS, PAIR),
            Figure(f"(2) {RECV} ÷ {C_RECV}", RECV, C_RECV),
            Figure(f"(2) {RECV} ÷ {TYPER}", RECV, TYPER, target=TYPER_TARGET),
        ],
        notes=[
            f"(1) round trips per run: {LOOPS} {trips:,}, {ONE_SHOTS} "
            f"{trips * ONE_SHOT_SCALE:,}, {PAIR} {trips * PAIR_SCALE:,}; the cases' times "
            "are per round trip, end to end (the start of sh or of the C pair is spread "
            "over every round trip and weighs under 1% of any of them).",
            "(1) each run gets two fresh SysV semaphores at 0 (untimed), checked to be "
            "back at 0 and removed after it.",
            "(2) each call finds a fresh SysV semaphore at 1 and takes the unit; checked "
            "and removed untimed. python is the venv's, with its bytecode cached.",
        ],
    )


def arguments() -> argparse.ArgumentParser:
    args = parser(__doc__)
    args.add_argument(
        "--round-trips",
        type=int,
        metavar="N",
        help=f"of the ipctool loops (default 20, --quick 5; C one-shots {ONE_SHOT_SCALE}x, "
        f"C pair {PAIR_SCALE:,}x)",
    )
    return args


if __name__ == "__main__":
    sys.exit(main(arguments(), body))
