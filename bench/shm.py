"""ipctool shm --stream against a pipe and against a C ring over SysV shm, side by side.

    .venv/bin/python bench/shm.py [--size 1G] [--rounds N] [--pin] [--json FILE] [--quick]

1 GiB from `head -c 1G /dev/zero` through three paths, each to /dev/null:

  ipctool:   head | ipctool shm send KEY --stream   and   ipctool shm recv KEY --stream
  C ring:    head | shm_ring send KEY SIZE          and   shm_ring recv KEY SIZE
             (tests/peers/shm_ring.c: the same ring layout, in C with atomics)
  head|cat:  head | cat (no shared memory: the floor of a pipe)

Both rings are 4 MiB (ipctool's default), on a key no one else uses, created by
whichever side comes first and removed by the receiver. Figures are time ratios
(lower is better), end to end and steady state (the same paths moving 1/16 of the
data in every round, subtracted). Target: ipctool at most 1.1x the head | cat
time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness import (
    IPCTOOL,
    SMALL,
    Bench,
    Proc,
    compile_c,
    head_cat,
    main,
    measure_transfers,
    parse_size,
    parser,
)

TARGET = 1.1  # ipctool time ÷ head | cat time, at most
RING = 4 << 20
PEER_SOURCE = Path(__file__).resolve().parents[1] / "tests" / "peers" / "shm_ring.c"
# Keys 0x5b<pid 16 bits><counter 8 bits>: unique to this run, never a test run's (0x7e...).
_keys = (0x5B000000 | (os.getpid() & 0xFFFF) << 8 | n for n in itertools.count(1))


def new_key(bench: Bench) -> str:
    key = hex(next(_keys) & 0xFFFFFFFF)
    # the receiver removes the ring; if a run failed, nothing of it may stay
    bench.at_exit(lambda: subprocess.run(["ipcrm", "-M", key], capture_output=True))
    return key


def ipctool_shm(bench: Bench, source: Proc | Path, sink: Path | None = None) -> float:
    key = new_key(bench)
    return bench.run(
        Proc([IPCTOOL, "shm", "recv", key, "--stream"], stdout=sink),
        Proc([IPCTOOL, "shm", "send", key, "--stream"], stdin=source),
    )


def c_ring(peer: str) -> Callable[[Bench, Proc | Path, Path | None], float]:
    def transfer(bench: Bench, source: Proc | Path, sink: Path | None = None) -> float:
        key = new_key(bench)
        return bench.run(
            Proc([peer, "recv", key, str(RING)], stdout=sink),
            Proc([peer, "send", key, str(RING)], stdin=source),
        )

    return transfer


Transfer = Callable[[Bench, Proc | Path, Path | None], float]


def body(bench: Bench) -> None:
    size = bench.args.size or (64 << 20 if bench.args.quick else 1 << 30)
    peer = compile_c(PEER_SOURCE, bench.workdir)
    transfers: dict[str, Transfer] = {
        "head | cat": head_cat,
        "C ring": c_ring(peer),
        "ipctool shm": ipctool_shm,
    }
    notes = [
        f"sizes: {size >> 20} MiB, and {(size // SMALL) >> 20} MiB for the baseline",
        f"rings: {RING >> 20} MiB segments",
    ]
    figures = measure_transfers(bench, transfers, size)

    chosen = figures("ipctool shm", "head | cat", TARGET) + figures("ipctool shm", "C ring")
    chosen += figures("C ring", "head | cat")
    bench.report("ipctool shm --stream against a pipe and a C ring", chosen, notes)


def arguments() -> argparse.ArgumentParser:
    args = parser(__doc__)
    args.add_argument("--size", type=parse_size, metavar="SIZE", help="default 1G (--quick 64M)")
    return args


if __name__ == "__main__":
    sys.exit(main(arguments(), body))
