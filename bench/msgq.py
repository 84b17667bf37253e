"""ipctool msgq against a C reference, measured side by side in one run.

    .venv/bin/python bench/msgq.py [--quick] [--pin]

Prints three figures, each as a ratio to a reference measured in the same run
(medians of interleaved rounds; every round runs every case once, shuffled):

  (1) --lines: messages/s of `ipctool msgq send K --lines` + `recv --lines --count N`
      against bench/peers/msgq_pair.c (send/recv), 16-byte messages;
  (2) --stream: bytes/s of `send --stream` + `recv --stream` against the C
      sendstream/recvstream pair with 8 KiB messages;
  (3) start-up: wall time of `ipctool --version`, `--help` and a one-message
      send, against `python -c "import typer"`.

The targets are printed with PASS/MISS for information; the exit status is 0
unless something crashed or a round trip came back wrong. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sysv_ipc

HERE = Path(__file__).resolve().parent
PEER_SOURCE = HERE / "peers" / "msgq_pair.c"
PYTHON = sys.executable
IPCTOOL = str(Path(sys.executable).parent / "ipctool")  # the venv's console script

LINE_BYTES = 16  # characters per line; the newline is not part of the message
STREAM_MESSAGE = 8192  # bytes per C stream message (SysV msgmax here)
PAIR_TIMEOUT = 600.0  # seconds before a hung pair is killed

LINES_TARGET = 0.5  # ipctool rate / C rate, at least
SEND_TARGET = 1.3  # one-message send / import typer, at most
HELP_TARGET = 2.0  # --help / import typer, at most


class BenchError(Exception):
    """A case crashed, hung or delivered the wrong data: its figure means nothing."""


@dataclass(frozen=True)
class Settings:
    rounds: int
    messages: int
    stream_bytes: int
    startup_rounds: int

    @classmethod
    def choose(cls, quick: bool, rounds: int | None) -> Settings:
        if quick:
            chosen = cls(rounds=1, messages=200_000, stream_bytes=64 << 20, startup_rounds=10)
        else:
            chosen = cls(rounds=3, messages=1_000_000, stream_bytes=256 << 20, startup_rounds=30)
        if rounds is not None:
            chosen = dataclasses.replace(chosen, rounds=rounds)
        return chosen


@dataclass
class Keys:
    """SysV keys unique to this run (derived from the pid), all removed by `cleanup`."""

    base: int = field(default_factory=lambda: 0x62000000 | ((os.getpid() & 0xFFFF) << 8))
    next_offset: int = 0
    used: list[int] = field(default_factory=list)

    def fresh(self, *, create: bool) -> int:
        """A key with no queue yet; with create=True, its new empty queue (0600) exists."""
        while self.next_offset < 256:
            key = self.base + self.next_offset
            self.next_offset += 1
            if create:
                try:
                    sysv_ipc.MessageQueue(key, sysv_ipc.IPC_CREX, 0o600)
                except sysv_ipc.ExistentialError:
                    continue  # someone else's queue: leave it alone
            elif queue_exists(key):
                continue
            self.used.append(key)
            return key
        raise BenchError("no free SysV key left in this run's range")

    def cleanup(self) -> None:
        for key in self.used:
            remove_queue(key)


def queue_exists(key: int) -> bool:
    try:
        sysv_ipc.MessageQueue(key)
    except sysv_ipc.ExistentialError:
        return False
    return True


def queue_messages(key: int) -> int | None:
    """Messages waiting in the queue, or None if there is no queue."""
    try:
        return sysv_ipc.MessageQueue(key).current_messages
    except sysv_ipc.ExistentialError:
        return None


def remove_queue(key: int) -> None:
    with contextlib.suppress(sysv_ipc.ExistentialError):
        sysv_ipc.MessageQueue(key).remove()


def build_peer(workdir: Path) -> str:
    """Compile the C reference peers into the temp dir (never into the repo)."""
    binary = workdir / "msgq_pair"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(binary), str(PEER_SOURCE)],
        check=True,
    )
    return str(binary)


def write_lines(path: Path, count: int) -> None:
    """count lines of LINE_BYTES characters each, plus a newline."""
    width = LINE_BYTES
    with path.open("wb") as out:
        for start in range(0, count, 100_000):
            stop = min(count, start + 100_000)
            out.write(b"".join(b"%0*d\n" % (width, i) for i in range(start, stop)))


def write_stream(path: Path, size: int) -> None:
    """size bytes of incompressible-looking data (one random MiB, repeated)."""
    block = random.Random(1).randbytes(1 << 20)
    with path.open("wb") as out:
        for _ in range(size >> 20):
            out.write(block)
        out.write(block[: size & ((1 << 20) - 1)])


@dataclass(frozen=True)
class Pair:
    """One sender and one receiver, run concurrently on one queue."""

    sender: Callable[[int], list[str]]
    receiver: Callable[[int], list[str]]
    receiver_removes_queue: bool


def wait_all(procs: list[subprocess.Popen[bytes]], timeout: float) -> bool:
    """Wait for every process; once one fails or time runs out, kill the rest.

    Blocks on pidfds, so the wait neither polls nor adds wake-ups to the run.
    Returns False on timeout.
    """
    deadline = time.monotonic() + timeout
    poller = select.poll()
    pidfds = {os.pidfd_open(proc.pid): proc for proc in procs}
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    try:
        while True:
            for fd, proc in pidfds.items():
                if proc.poll() is not None:
                    with contextlib.suppress(KeyError):
                        poller.unregister(fd)
            running = [proc for proc in procs if proc.returncode is None]
            failed = any(proc.returncode for proc in procs)
            remaining = deadline - time.monotonic()
            if not running:
                return True
            if failed or remaining <= 0:
                for proc in running:
                    proc.kill()
                    proc.wait()
                return remaining > 0
            poller.poll(remaining * 1000)
    finally:
        for fd in pidfds:
            os.close(fd)


def run_pair(pair: Pair, keys: Keys, stdin: Path, stdout: Path | None, workdir: Path) -> float:
    """Seconds from starting the receiver until both ends have exited.

    The queue is created empty first, so neither end waits for the other to
    create it; the receiver starts first, the sender right after.
    """
    key = keys.fresh(create=True)
    err_recv, err_send = workdir / "recv.err", workdir / "send.err"
    out_target = stdout if stdout is not None else Path(os.devnull)
    with (
        stdin.open("rb") as source,
        out_target.open("wb") as sink,
        err_recv.open("wb") as recv_err,
        err_send.open("wb") as send_err,
    ):
        start = time.perf_counter()
        receiver = subprocess.Popen(pair.receiver(key), stdout=sink, stderr=recv_err)
        sender = subprocess.Popen(
            pair.sender(key), stdin=source, stdout=subprocess.DEVNULL, stderr=send_err
        )
        finished = wait_all([sender, receiver], PAIR_TIMEOUT)
        elapsed = time.perf_counter() - start
    if not finished:
        raise BenchError(f"timed out: {pair.sender(key)} | {pair.receiver(key)}")
    send_rc, recv_rc = sender.returncode, receiver.returncode
    left = queue_messages(key)
    remove_queue(key)
    if send_rc or recv_rc:
        details = (err_send.read_text() + err_recv.read_text()).strip()
        raise BenchError(
            f"`{' '.join(pair.sender(key))}` exited {send_rc}, "
            f"`{' '.join(pair.receiver(key))}` exited {recv_rc}: {details}"
        )
    if pair.receiver_removes_queue and left is not None:
        raise BenchError(f"the receiver left queue {key:#x} behind")
    if left:
        raise BenchError(f"{left} messages were left in queue {key:#x}")
    return elapsed


def line_pairs(peer: str, messages: int) -> dict[str, Pair]:
    count, size = str(messages), str(LINE_BYTES)
    return {
        "ipctool": Pair(
            sender=lambda k: [IPCTOOL, "msgq", "send", str(k), "--lines"],
            receiver=lambda k: [IPCTOOL, "msgq", "recv", str(k), "--lines", "--count", count],
            receiver_removes_queue=False,
        ),
        "C": Pair(
            sender=lambda k: [peer, "send", str(k), count, size],
            receiver=lambda k: [peer, "recv", str(k), count, size],
            receiver_removes_queue=True,
        ),
    }


def stream_pairs(peer: str) -> dict[str, Pair]:
    size = str(STREAM_MESSAGE)
    return {
        "ipctool": Pair(
            sender=lambda k: [IPCTOOL, "msgq", "send", str(k), "--stream"],
            receiver=lambda k: [IPCTOOL, "msgq", "recv", str(k), "--stream"],
            receiver_removes_queue=False,
        ),
        "C": Pair(
            sender=lambda k: [peer, "sendstream", str(k), size],
            receiver=lambda k: [peer, "recvstream", str(k), size],
            receiver_removes_queue=True,
        ),
    }


def check_round_trips(peer: str, keys: Keys, workdir: Path) -> None:
    """Untimed: every pair must deliver its input exactly, or no figure is worth printing."""
    lines_in, stream_in = workdir / "check.lines", workdir / "check.stream"
    write_lines(lines_in, 1000)
    write_stream(stream_in, (3 << 20) + 12345)  # a short last message too
    copy = workdir / "check.out"
    for name, pair in line_pairs(peer, 1000).items():
        run_pair(pair, keys, lines_in, copy, workdir)
        if name == "ipctool" and copy.read_bytes() != lines_in.read_bytes():
            raise BenchError("ipctool msgq --lines round trip changed the data")
    for name, pair in stream_pairs(peer).items():
        run_pair(pair, keys, stream_in, copy, workdir)
        if copy.read_bytes() != stream_in.read_bytes():
            raise BenchError(f"the {name} --stream round trip changed the data")
    for path in (lines_in, stream_in, copy):
        path.unlink()


def interleaved(
    cases: dict[str, Callable[[], float]], rounds: int, rng: random.Random
) -> dict[str, list[float]]:
    """Run every case once per round, in a new shuffled order each round."""
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        order = list(cases)
        rng.shuffle(order)
        for name in order:
            results[name].append(cases[name]())
    return results


@dataclass(frozen=True)
class Throughput:
    ipctool: list[float]  # units per second, one per round
    c: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ipctool) / statistics.median(self.c)

    @property
    def round_ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ipctool, self.c, strict=True)]


def measure_throughput(
    pairs: dict[str, Pair],
    units: float,
    source: Path,
    keys: Keys,
    workdir: Path,
    rounds: int,
    rng: random.Random,
) -> Throughput:
    cases = {
        name: (lambda pair=pair: units / run_pair(pair, keys, source, None, workdir))
        for name, pair in pairs.items()
    }
    rates = interleaved(cases, rounds, rng)
    return Throughput(ipctool=rates["ipctool"], c=rates["C"])


@dataclass(frozen=True)
class StartupCase:
    argv: list[str]
    stdin: bytes | None = None
    after: Callable[[], None] | None = None  # untimed, after each run


def time_startup(case: StartupCase) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        case.argv,
        input=case.stdin,
        stdin=None if case.stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise BenchError(f"{case.argv} exited {done.returncode}: {done.stderr.decode().strip()}")
    if case.after is not None:
        case.after()
    return elapsed


TYPER = 'python -c "import typer"'
SEND_ONE = "echo x | ipctool msgq send K"


def startup_cases(keys: Keys) -> dict[str, StartupCase]:
    key = keys.fresh(create=False)

    def drain() -> None:
        # Each timed send finds no queue and creates it, as a first send does.
        if queue_messages(key) != 1:
            raise BenchError(f"the one-message send left {queue_messages(key)} messages")
        remove_queue(key)

    return {
        "python -c pass": StartupCase([PYTHON, "-c", "pass"]),
        TYPER: StartupCase([PYTHON, "-c", "import typer"]),
        "ipctool --version": StartupCase([IPCTOOL, "--version"]),
        "ipctool --help": StartupCase([IPCTOOL, "--help"]),
        SEND_ONE: StartupCase([IPCTOOL, "msgq", "send", str(key)], stdin=b"x\n", after=drain),
    }


def measure_startup(keys: Keys, rounds: int, rng: random.Random) -> dict[str, float]:
    """Median seconds per case, after one untimed warm-up run of each."""
    cases = startup_cases(keys)
    for case in cases.values():
        time_startup(case)
    times = interleaved(
        {name: (lambda case=case: time_startup(case)) for name, case in cases.items()},
        rounds,
        rng,
    )
    return {name: statistics.median(values) for name, values in times.items()}


def verdict(value: float, target: float, at_least: bool) -> str:
    ok = value >= target if at_least else value <= target
    return "PASS" if ok else "MISS"


def si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.0f}"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def report(
    settings: Settings,
    args: argparse.Namespace,
    lines: Throughput,
    stream: Throughput,
    startup: dict[str, float],
) -> str:
    mib = settings.stream_bytes >> 20
    rows = [
        ["figure", "ipctool", "C reference", "ratio", "target", ""],
        [
            f"(1) --lines, {settings.messages:,} msgs of {LINE_BYTES} B",
            f"{si(statistics.median(lines.ipctool))} msg/s",
            f"{si(statistics.median(lines.c))} msg/s",
            f"{lines.ratio:.2f}",
            f">= {LINES_TARGET:.2f}",
            verdict(lines.ratio, LINES_TARGET, at_least=True),
        ],
        [
            f"(2) --stream, {mib} MiB in {STREAM_MESSAGE} B msgs",
            f"{statistics.median(stream.ipctool) / (1 << 30):.2f} GiB/s",
            f"{statistics.median(stream.c) / (1 << 30):.2f} GiB/s",
            f"{stream.ratio:.2f}",
            "(none)",
            "",
        ],
    ]
    typer_time = startup[TYPER]
    targets = {SEND_ONE: SEND_TARGET, "ipctool --help": HELP_TARGET}
    startup_rows = [["(3) start-up, median wall time", "ms", f"÷ {TYPER}", "target", ""]]
    for name, seconds in startup.items():
        ratio = seconds / typer_time
        target = targets.get(name)
        startup_rows.append(
            [
                f"    {name}",
                f"{seconds * 1e3:.1f}",
                f"{ratio:.2f}",
                f"<= {target:.2f}" if target else "",
                verdict(ratio, target, at_least=False) if target else "",
            ]
        )
    header = (
        f"ipctool msgq benchmark: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{'all processes pinned to one CPU' if args.pin else 'unpinned'}, "
        f"{'environment as is' if args.keep_env else 'bytecode cached'}; "
        f"medians of {settings.rounds} interleaved round(s) for (1)-(2), "
        f"{settings.startup_rounds} for (3)."
    )
    notes = [
        f"(1) a message is one {LINE_BYTES}-character line of the input file without its "
        f"newline ({LINE_BYTES + 1} bytes per line on stdin); the C pair sends "
        f"{LINE_BYTES}-byte messages.",
        "(1)-(2) time both processes from start to exit (ipctool's start-up included); "
        "ratio = ipctool rate / C rate, higher is better.",
        "(3) each send creates its queue (removed between runs, untimed); "
        "ratio = time / import typer, lower is better.",
        "per-round ratios (1): "
        + " ".join(f"{r:.2f}" for r in lines.round_ratios)
        + "   (2): "
        + " ".join(f"{r:.2f}" for r in stream.round_ratios),
        "Ratios hold for this run only; targets are informational.",
    ]
    return "\n\n".join([header, table(rows), table(startup_rows), "\n".join(notes)])


def cache_bytecode(prefix: Path) -> None:
    """Let every child Python cache its bytecode, in the temp dir, as an installed tool does.

    Without this, PYTHONDONTWRITEBYTECODE=1 in the environment and an editable
    checkout with no __pycache__ make every ipctool start compile its own
    modules from source. The first (untimed) runs fill the cache.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 round, 200,000 messages, 64 MiB, 10 start-up rounds",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        metavar="N",
        help="interleaved rounds for (1) and (2) (default 3, --quick 1)",
    )
    parser.add_argument(
        "--pin", action="store_true", help="run every process on one CPU (the first allowed)"
    )
    parser.add_argument(
        "--keep-env",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX as they are (see README)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the shuffled order")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.choose(args.quick, args.rounds)
    if not Path(IPCTOOL).exists():
        sys.stderr.write(f"bench: no ipctool next to {PYTHON}; install the project first\n")
        return 1
    if args.pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # children inherit it
    rng = random.Random(args.seed)
    keys = Keys()
    scratch_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    workdir = Path(tempfile.mkdtemp(prefix="ipctool-bench-", dir=scratch_root))
    if not args.keep_env:
        cache_bytecode(workdir / "pycache")
    try:
        peer = build_peer(workdir)
        check_round_trips(peer, keys, workdir)
        lines_file, stream_file = workdir / "lines", workdir / "stream"
        write_lines(lines_file, settings.messages)
        write_stream(stream_file, settings.stream_bytes)
        print("measuring (1) --lines ...", file=sys.stderr, flush=True)
        lines = measure_throughput(
            line_pairs(peer, settings.messages),
            settings.messages,
            lines_file,
            keys,
            workdir,
            settings.rounds,
            rng,
        )
        lines_file.unlink()
        print("measuring (2) --stream ...", file=sys.stderr, flush=True)
        stream = measure_throughput(
            stream_pairs(peer),
            settings.stream_bytes,
            stream_file,
            keys,
            workdir,
            settings.rounds,
            rng,
        )
        stream_file.unlink()
        print("measuring (3) start-up ...", file=sys.stderr, flush=True)
        startup = measure_startup(keys, settings.startup_rounds, rng)
    except BenchError as err:
        sys.stderr.write(f"bench: {err}\n")
        return 1
    finally:
        keys.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(settings, args, lines, stream, startup))
    return 0


if __name__ == "__main__":
    sys.exit(main())
