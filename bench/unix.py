"""ipctool unix against socat and nc over a unix stream socket, measured side by side.

    .venv/bin/python bench/unix.py [--size 1G] [--rounds N] [--pin] [--json FILE] [--quick]

1 GiB from `head -c 1G /dev/zero`, to /dev/null, through five paths:

  ipctool:        ipctool unix recv PATH        and  head | ipctool unix send PATH
  socat:          socat -u UNIX-LISTEN:PATH -   and  head | socat -u - UNIX-CONNECT:PATH
  socat -b 128K:  the same with -b 131072 (socat's buffer; its default is 8 KiB)
  nc:             nc -lU PATH                   and  head | nc -N -U PATH
  head|cat:       head | cat (no socket: the floor of a pipe)

The receiver starts first and the sender once it listens (read from
/proc/net/unix, polled; the wait is part of the time, for every case alike).
Each pair is timed twice: from the receiver's start (both start-ups in the
time), and "(listener up)" from the sender's start, the receiver already
listening, as a service is when something sends to it.
Figures are time ratios (lower is better), end to end and steady state (the
same paths moving 1/16 of the data in every round, subtracted). Targets
(issue 7): ipctool at most 0.5x socat's default time and 0.8x socat -b 131072's.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from harness import (
    IPCTOOL,
    SMALL,
    Bench,
    Figure,
    Proc,
    head_cat,
    main,
    measure_transfers,
    parse_size,
    parser,
)

TARGETS = {"socat": 0.5, "socat -b 128K": 0.8}  # ipctool time ÷ the reference's, at most


def listening(path: Path) -> Callable[[], bool]:
    """Whether a listener is on the socket file (flag __SO_ACCEPTCON in /proc/net/unix)."""
    name = str(path)

    def ready() -> bool:
        with open("/proc/net/unix") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 7 and fields[-1] == name and int(fields[3], 16) & 0x10000:
                    return True
        return False

    return ready


def pair(receiver: list[str], sender: list[str], up: bool = False) -> Callable[..., float]:
    """A transfer: `receiver PATH-args` to sink, then `source | sender PATH-args`;
    "{path}" in either is the socket's path. up: the clock starts with the sender,
    the receiver listening already (a server that is up)."""

    def transfer(bench: Bench, source: Proc | Path, sink: Path | None = None) -> float:
        path = bench.path("sock")
        fill = [arg.replace("{path}", str(path)) for arg in receiver]
        send = [arg.replace("{path}", str(path)) for arg in sender]
        try:
            return bench.run(
                Proc(fill, stdout=sink, ready=listening(path)),
                Proc(send, stdin=source),
                clock_from=1 if up else 0,
            )
        finally:
            if path.exists():  # nc leaves its socket file
                path.unlink()

    return transfer


PAIRS = {
    "ipctool unix": ([IPCTOOL, "unix", "recv", "{path}"], [IPCTOOL, "unix", "send", "{path}"]),
    "socat": (
        ["socat", "-u", "UNIX-LISTEN:{path}", "-"],
        ["socat", "-u", "-", "UNIX-CONNECT:{path}"],
    ),
    "socat -b 128K": (
        ["socat", "-b", "131072", "-u", "UNIX-LISTEN:{path}", "-"],
        ["socat", "-b", "131072", "-u", "-", "UNIX-CONNECT:{path}"],
    ),
    "nc": (["nc", "-lU", "{path}"], ["nc", "-N", "-U", "{path}"]),
}
UP = " (listener up)"  # the same pairs, timed from the sender's start
TRANSFERS: dict[str, Callable[..., float]] = {
    "head | cat": head_cat,
    **{name: pair(*ends) for name, ends in PAIRS.items()},
    **{name + UP: pair(*ends, up=True) for name, ends in PAIRS.items()},
}


def body(bench: Bench) -> None:
    size = bench.args.size or (64 << 20 if bench.args.quick else 1 << 30)
    notes = [f"sizes: {size >> 20} MiB, and {(size // SMALL) >> 20} MiB for the baseline"]
    figures = measure_transfers(bench, TRANSFERS, size)

    chosen: list[Figure] = []
    for reference in ("socat", "socat -b 128K", "nc", "head | cat"):
        chosen += figures("ipctool unix", reference, TARGETS.get(reference))
    for reference in ("socat", "socat -b 128K", "nc"):
        chosen += figures("ipctool unix" + UP, reference + UP, TARGETS.get(reference))
    for reference in ("socat", "socat -b 128K", "nc"):
        chosen += figures(reference, "head | cat")
    bench.report("ipctool unix against socat and nc (unix stream socket)", chosen, notes)


def arguments() -> argparse.ArgumentParser:
    args = parser(__doc__)
    args.add_argument("--size", type=parse_size, metavar="SIZE", help="default 1G (--quick 64M)")
    return args


if __name__ == "__main__":
    sys.exit(main(arguments(), body))
