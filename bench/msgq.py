"""ipctool msgq against the C pair in bench/peers/msgq_pair.c, measured side by side.

    .venv/bin/python bench/msgq.py [--rounds N] [--pin] [--json FILE] [--quick]

  (1) lines: `ipctool msgq send K --lines` + `recv K --lines --count N` moving
      1,000,000 16-byte messages, against the C send/recv pair: ipctool's rate ÷
      C's (target >= 0.6);
  (2) stream: `send --stream` + `recv --stream` moving 256 MiB, against the C
      sendstream/recvstream pair with 8 KiB messages: rate ÷ C's, end to end and
      steady state (target steady state >= 0.7).

Steady state: both pairs also move 1/16 of the data in every round; that time
is subtracted, which leaves start-up out. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sysv_ipc
from harness import (
    IPCTOOL,
    Bench,
    BenchError,
    Figure,
    Proc,
    check_same,
    compile_c,
    main,
    parse_size,
    parser,
    transfer_figures,
    write_random,
)

PEER_SOURCE = Path(__file__).resolve().parent / "peers" / "msgq_pair.c"
LINE_BYTES = 16  # characters per line; the newline is not part of the message
STREAM_MESSAGE = 8192  # bytes per C stream message (SysV msgmax here)
SMALL = 16  # the steady-state baseline moves 1/SMALL of the data
LINES_TARGET = 0.6  # ipctool rate ÷ C rate, at least
STREAM_STEADY_TARGET = 0.7
Targets = tuple[float | None, float | None]  # end to end, steady state


def exists(key: int) -> bool:
    try:
        sysv_ipc.MessageQueue(key)
    except sysv_ipc.ExistentialError:
        return False
    return True


class Queues:
    """Fresh SysV queues on keys derived from the pid; whatever is left is removed at exit."""

    def __init__(self) -> None:
        self.base = 0x62000000 | ((os.getpid() & 0xFFFF) << 8)
        self.offset = 0
        self.live: set[int] = set()

    def create(self) -> int:
        """The key of a new empty queue (0600), so that neither end waits for the other."""
        for _ in range(256):
            key = self.base + self.offset % 256
            self.offset += 1
            try:
                sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREX, 0o600)
            except sysv_ipc.ExistentialError:
                continue  # ours in use, or someone else's: leave it alone
            self.live.add(key)
            return key
        raise BenchError("no free SysV key left in this run's range")

    def free_key(self) -> int:
        """A key with no queue yet, for a run that creates it (removed at exit if left)."""
        for _ in range(256):
            key = self.base + self.offset % 256
            self.offset += 1
            if key not in self.live and not exists(key):
                self.live.add(key)
                return key
        raise BenchError("no free SysV key left in this run's range")

    def finish(self, key: int, receiver_removes_it: bool) -> None:
        """After a run: the queue must be empty (or gone, if the receiver removes it)."""
        try:
            queue = sysv_ipc.MessageQueue(key)
        except sysv_ipc.ExistentialError:
            self.live.discard(key)
            return
        left = queue.current_messages
        self.remove(key)
        if left:
            raise BenchError(f"{left} messages were left in queue {key:#x}")
        if receiver_removes_it:
            raise BenchError(f"the receiver left queue {key:#x} behind")

    def remove(self, key: int) -> None:
        with contextlib.suppress(sysv_ipc.ExistentialError):
            sysv_ipc.MessageQueue(key).remove()
        self.live.discard(key)

    def remove_all(self) -> None:
        for key in list(self.live):
            self.remove(key)


@dataclass(frozen=True)
class Pair:
    """A receiver and a sender on one queue; the receiver starts first."""

    receiver: Callable[[int], list[str]]
    sender: Callable[[int], list[str]]
    receiver_removes_queue: bool

    def run(self, bench: Bench, queues: Queues, source: Path, sink: Path | None = None) -> float:
        key = queues.create()
        try:
            elapsed = bench.run(
                Proc(self.receiver(key), stdout=sink), Proc(self.sender(key), stdin=source)
            )
        except BaseException:
            queues.remove(key)
            raise
        queues.finish(key, self.receiver_removes_queue)
        return elapsed


def line_pairs(peer: str, count: int) -> dict[str, Pair]:
    n, size = str(count), str(LINE_BYTES)
    return {
        "ipctool": Pair(
            receiver=lambda k: [IPCTOOL, "msgq", "recv", str(k), "--lines", "--count", n],
            sender=lambda k: [IPCTOOL, "msgq", "send", str(k), "--lines"],
            receiver_removes_queue=False,
        ),
        "C": Pair(
            receiver=lambda k: [peer, "recv", str(k), n, size],
            sender=lambda k: [peer, "send", str(k), n, size],
            receiver_removes_queue=True,
        ),
    }


def stream_pairs(peer: str) -> dict[str, Pair]:
    size = str(STREAM_MESSAGE)
    return {
        "ipctool": Pair(
            receiver=lambda k: [IPCTOOL, "msgq", "recv", str(k), "--stream"],
            sender=lambda k: [IPCTOOL, "msgq", "send", str(k), "--stream"],
            receiver_removes_queue=False,
        ),
        "C": Pair(
            receiver=lambda k: [peer, "recvstream", str(k), size],
            sender=lambda k: [peer, "sendstream", str(k), size],
            receiver_removes_queue=True,
        ),
    }


def write_lines(path: Path, count: int) -> None:
    """count lines of LINE_BYTES digits, each plus a newline."""
    with path.open("wb") as out:
        for start in range(0, count, 100_000):
            stop = min(count, start + 100_000)
            out.write(b"".join(b"%0*d\n" % (LINE_BYTES, i) for i in range(start, stop)))


def check_round_trips(bench: Bench, peer: str, queues: Queues) -> None:
    """Untimed: every pair delivers its input exactly (the C lines pair: every message)."""
    lines, stream, copy = bench.path("check.lines"), bench.path("check.stream"), bench.path("copy")
    write_lines(lines, 1000)
    write_random(stream, (3 << 20) + 12345)  # a short last message too
    for name, pair in line_pairs(peer, 1000).items():
        pair.run(bench, queues, lines, copy)
        if name == "ipctool":
            check_same(lines, copy, "ipctool msgq --lines")
    for name, pair in stream_pairs(peer).items():
        pair.run(bench, queues, stream, copy)
        check_same(stream, copy, f"the {name} --stream pair")


def body(bench: Bench) -> None:
    quick = bench.args.quick
    messages = bench.args.messages or (200_000 if quick else 1_000_000)
    stream_bytes = bench.args.stream_size or (64 << 20 if quick else 256 << 20)
    queues = Queues()
    bench.at_exit(queues.remove_all)
    peer = compile_c(PEER_SOURCE, bench.workdir)
    check_round_trips(bench, peer, queues)

    cases: dict[str, Callable[[], float]] = {}
    names: dict[tuple[str, str, int], str] = {}
    for count in (messages, messages // SMALL):
        source = bench.path("lines")
        write_lines(source, count)
        for who, pair in line_pairs(peer, count).items():
            names["lines", who, count] = name = f"{who} lines {count:,}"
            cases[name] = lambda pair=pair, source=source: pair.run(bench, queues, source)
    for size in (stream_bytes, stream_bytes // SMALL):
        source = bench.path("stream")
        write_random(source, size)
        for who, pair in stream_pairs(peer).items():
            names["stream", who, size] = name = f"{who} stream {size >> 20} MiB"
            cases[name] = lambda pair=pair, source=source: pair.run(bench, queues, source)
    bench.measure(cases)

    def figures(kind: str, number: int, big: int, unit: str, targets: Targets) -> list[Figure]:
        small = big // SMALL
        return transfer_figures(
            f"({number}) {kind}",
            names[kind, "ipctool", big],
            names[kind, "C", big],
            (names[kind, "ipctool", small], names[kind, "C", small]),
            speed=True,
            targets=targets,
            work=(big, small),
            unit=unit,
        )

    bench.report(
        "ipctool msgq against C",
        figures("lines", 1, messages, "msg", (LINES_TARGET, None))
        + figures("stream", 2, stream_bytes, "B", (None, STREAM_STEADY_TARGET)),
        notes=[
            f"(1) a message is one {LINE_BYTES}-character line without its newline "
            f"({LINE_BYTES + 1} bytes a line on stdin); C sends {LINE_BYTES}-byte messages.",
            f"(2) C sends {STREAM_MESSAGE}-byte messages; SysV msgmnb here holds two of them.",
            "Both ends of each pair are timed from starting the receiver until both exit; "
            f"the steady-state baseline moves 1/{SMALL} of the data.",
        ],
    )


def arguments() -> argparse.ArgumentParser:
    args = parser(__doc__)
    args.add_argument(
        "--messages", type=int, metavar="N", help="for (1) (default 1,000,000; --quick 200,000)"
    )
    args.add_argument(
        "--stream-size", type=parse_size, metavar="SIZE", help="for (2) (default 256M; --quick 64M)"
    )
    return args


if __name__ == "__main__":
    sys.exit(main(arguments(), body))
