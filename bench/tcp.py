"""ipctool tcp against socat and nc over TCP on loopback, measured side by side.

    .venv/bin/python bench/tcp.py [--size 1G] [--rounds N] [--pin] [--json FILE] [--quick]

1 GiB from `head -c 1G /dev/zero`, to /dev/null, through five paths:

  ipctool:        ipctool tcp recv 127.0.0.1:P          and  head | ipctool tcp send 127.0.0.1:P
  socat:          socat -u TCP-LISTEN:P,bind=127.0.0.1 - and  head | socat -u - TCP:127.0.0.1:P
  socat -b 128K:  the same with -b 131072 (socat's buffer; its default is 8 KiB)
  nc:             nc -l 127.0.0.1 P                     and  head | nc -N 127.0.0.1 P
  head|cat:       head | cat (no socket: the floor of a pipe)

Each transfer gets a port that was free just before it (bound to port 0 and
closed). The receiver starts first and the sender once it listens (read from
/proc/net/tcp, polled; the wait is part of the time, for every case alike).
Each pair is timed twice: from the receiver's start (both start-ups in the
time), and "(listener up)" from the sender's start, the receiver already
listening, as a service is when something sends to it. Figures are time
ratios (lower is better), end to end and steady state (the same paths moving
1/16 of the data in every round, subtracted). Targets (issue 7): ipctool at
most 0.5x socat's default time and 0.8x socat -b 131072's. See bench/README.md.
"""

from __future__ import annotations

import argparse
import socket
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
from unix import TARGETS

LISTEN = "0A"  # TCP_LISTEN as /proc/net/tcp writes the state


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def listening(port: int) -> Callable[[], bool]:
    """Whether something listens on 127.0.0.1:port (from /proc/net/tcp)."""
    local = f"0100007F:{port:04X}" if sys.byteorder == "little" else f"7F000001:{port:04X}"

    def ready() -> bool:
        with open("/proc/net/tcp") as f:
            return any(
                fields[1] == local and fields[3] == LISTEN
                for fields in (line.split() for line in f)
                if len(fields) > 3
            )

    return ready


def pair(receiver: list[str], sender: list[str], up: bool = False) -> Callable[..., float]:
    """A transfer: `receiver` to sink, then `source | sender`; "{port}" in either is a
    port free at the start. up: the clock starts with the sender, the receiver
    listening already (a server that is up)."""

    def transfer(bench: Bench, source: Proc | Path, sink: Path | None = None) -> float:
        port = str(free_port())
        fill = [arg.replace("{port}", port) for arg in receiver]
        send = [arg.replace("{port}", port) for arg in sender]
        return bench.run(
            Proc(fill, stdout=sink, ready=listening(int(port))),
            Proc(send, stdin=source),
            clock_from=1 if up else 0,
        )

    return transfer


PAIRS = {
    "ipctool tcp": (
        [IPCTOOL, "tcp", "recv", "127.0.0.1:{port}"],
        [IPCTOOL, "tcp", "send", "127.0.0.1:{port}"],
    ),
    "socat": (
        ["socat", "-u", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "-"],
        ["socat", "-u", "-", "TCP:127.0.0.1:{port}"],
    ),
    "socat -b 128K": (
        ["socat", "-b", "131072", "-u", "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr", "-"],
        ["socat", "-b", "131072", "-u", "-", "TCP:127.0.0.1:{port}"],
    ),
    "nc": (["nc", "-l", "127.0.0.1", "{port}"], ["nc", "-N", "127.0.0.1", "{port}"]),
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
        chosen += figures("ipctool tcp", reference, TARGETS.get(reference))
    for reference in ("socat", "socat -b 128K", "nc"):
        chosen += figures("ipctool tcp" + UP, reference + UP, TARGETS.get(reference))
    for reference in ("socat", "socat -b 128K", "nc"):
        chosen += figures(reference, "head | cat")
    bench.report("ipctool tcp against socat and nc (TCP on loopback)", chosen, notes)


def arguments() -> argparse.ArgumentParser:
    args = parser(__doc__)
    args.add_argument("--size", type=parse_size, metavar="SIZE", help="default 1G (--quick 64M)")
    return args


if __name__ == "__main__":
    sys.exit(main(arguments(), body))
