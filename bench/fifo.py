"""ipctool fifo against cat on both ends of a FIFO, measured side by side.

    .venv/bin/python bench/fifo.py [--size 1G] [--rounds N] [--pin] [--json FILE] [--quick]

1 GiB from `head -c 1G /dev/zero` through three paths, each to /dev/null:

  ipctool:   head | ipctool fifo send PATH   and   ipctool fifo recv PATH
  cat FIFO:  mkfifo PATH; head | cat > PATH  and   cat PATH
  head|cat:  head | cat (no FIFO: the floor of a pipe)

Figures are time ratios (lower is better), end to end and steady state (the
same paths moving 1/16 of the data in every round, subtracted). Target:
ipctool at most 1.0x the cat-FIFO time. Without the fifo plugin, only the cat
figures are measured. See bench/README.md.
"""

from __future__ import annotations

import argparse
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
    head_cat,
    main,
    measure_transfers,
    parse_size,
    parser,
)

TARGET = 1.0  # ipctool time ÷ cat-FIFO time, at most


def cat_fifo(bench: Bench, source: Proc | Path, sink: Path | None = None) -> float:
    fifo = bench.path("fifo")
    os.mkfifo(fifo, 0o600)  # untimed, as the FIFO would exist before the transfer
    try:
        return bench.run(
            Proc(["cat", str(fifo)], stdout=sink), Proc(["cat"], stdin=source, stdout=fifo)
        )
    finally:
        fifo.unlink()


def ipctool_fifo(bench: Bench, source: Proc | Path, sink: Path | None = None) -> float:
    fifo = bench.path("fifo")
    elapsed = bench.run(
        Proc([IPCTOOL, "fifo", "recv", str(fifo)], stdout=sink),
        Proc([IPCTOOL, "fifo", "send", str(fifo)], stdin=source),
    )
    if fifo.exists():  # the end that created it should have removed it: worth saying, not fatal
        print(f"bench: ipctool fifo left {fifo} behind", file=sys.stderr)
        fifo.unlink()
    return elapsed


Transfer = Callable[[Bench, Proc | Path, Path | None], float]


def plugin_installed() -> bool:
    done = subprocess.run([IPCTOOL, "fifo", "--help"], capture_output=True)
    return done.returncode == 0


def body(bench: Bench) -> None:
    size = bench.args.size or (64 << 20 if bench.args.quick else 1 << 30)
    transfers: dict[str, Transfer] = {"head | cat": head_cat, "cat FIFO": cat_fifo}
    notes = [f"sizes: {size >> 20} MiB, and {(size // SMALL) >> 20} MiB for the baseline"]
    if plugin_installed():
        transfers["ipctool fifo"] = ipctool_fifo
    else:
        print(
            "bench: fifo plugin not installed; measuring the cat references only", file=sys.stderr
        )
        notes.append("fifo plugin not installed (`ipctool fifo --help` failed): no ipctool figure.")

    figures = measure_transfers(bench, transfers, size)

    chosen = figures("cat FIFO", "head | cat")
    if "ipctool fifo" in transfers:
        chosen = figures("ipctool fifo", "cat FIFO", TARGET) + figures("ipctool fifo", "head | cat")
        chosen += figures("cat FIFO", "head | cat")
    bench.report("ipctool fifo against cat", chosen, notes)


def arguments() -> argparse.ArgumentParser:
    args = parser(__doc__)
    args.add_argument("--size", type=parse_size, metavar="SIZE", help="default 1G (--quick 64M)")
    return args


if __name__ == "__main__":
    sys.exit(main(arguments(), body))
