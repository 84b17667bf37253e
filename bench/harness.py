"""Shared plumbing for the benchmarks in bench/ (stdlib only).

A script builds a parser with `parser()`, adds its own options, and hands a
body to `main()`. The body gets a `Bench`: a scratch dir on /dev/shm, `run()`
for processes (pipelines, timeouts, exit checks), `measure()` for interleaved
shuffled rounds and `report()` for the figures:

    def body(bench: Bench) -> None:
        check_every_case_once(bench)                  # wrong data is never timed
        bench.measure({"ipctool": ..., "reference": ...})
        bench.report("title", [Figure("x", "ipctool", "reference", target=1.0)])

    sys.exit(main(parser(__doc__), body))

A figure is the median of per-round ratios (ipctool case ÷ reference case from
the same round) with its spread: one slow round on a loaded machine moves the
spread, not the figure. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

PYTHON = sys.executable
IPCTOOL = str(Path(sys.executable).parent / "ipctool")  # the venv's console script
MIN_ROUNDS = 11  # fewer rounds make a smoke run, never a result


class BenchError(Exception):
    """Something crashed, hung or delivered wrong data: no figure of this run means anything."""


@dataclass(frozen=True)
class Proc:
    """One process of a run.

    stdin: another Proc piped in (as `a | b`), bytes through a pipe (as
    `echo x |`, at most PIPE_BUF), a file, or None for /dev/null. stdout: a
    file or a FIFO (opened once its reader is there, as `cat > FIFO`), or None
    for /dev/null. env: added to the environment. ready: for a process that
    must be there before the next starts (a listener): the next starts once
    ready() is true, polled every 0.2 ms (the wait is part of the time).
    """

    argv: Sequence[str]
    stdin: Proc | bytes | Path | None = None
    stdout: Path | None = None
    env: Mapping[str, str] | None = None
    ready: Callable[[], bool] | None = None

    def __str__(self) -> str:
        text = " ".join(self.argv)
        if isinstance(self.stdin, Proc):
            text = f"{self.stdin} | {text}"
        elif self.stdin is not None:
            text += " < (input)"
        return text + (f" > {self.stdout}" if self.stdout else "")


@dataclass(frozen=True)
class Figure:
    """ipctool case ÷ reference case, per round.

    speed=False: a ratio of times (lower is better); speed=True: a ratio of
    speeds, reference time ÷ case time (higher is better). baseline: a small
    transfer of each of the two pairs; its time in the same round is
    subtracted from the case's and the reference's, which leaves the steady
    state without start-up. work (with unit "B", "msg", ...): how much the
    two cases move (after subtracting the baseline's), to print rates.
    """

    label: str
    case: str
    reference: str
    speed: bool = False
    target: float | None = None
    baseline: tuple[str, str] | None = None
    work: float | None = None
    unit: str = ""


def transfer_figures(
    label: str,
    case: str,
    reference: str,
    baseline: tuple[str, str],
    *,
    speed: bool = False,
    targets: tuple[float | None, float | None] = (None, None),
    work: tuple[float, float] | None = None,
    unit: str = "",
) -> list[Figure]:
    """A transfer's end-to-end figure and its steady-state twin.

    baseline: the small transfers of the case and the reference; targets and
    work (the big and the small transfer's amounts) go end to end, steady state.
    """
    total, small = (None, None) if work is None else work
    end_to_end = Figure(
        f"{label}, end to end", case, reference, speed, targets[0], None, total, unit
    )
    steady = Figure(
        f"{label}, steady state",
        case,
        reference,
        speed,
        targets[1],
        baseline,
        None if total is None or small is None else total - small,
        unit,
    )
    return [end_to_end, steady]


SMALL = 16  # a stream's steady-state baseline moves 1/SMALL of the data
Transfer = Callable[..., float]  # (bench, source, sink) -> seconds


def head(size: int) -> Proc:
    """The stream every transfer script moves: `size` bytes of /dev/zero."""
    return Proc(["head", "-c", str(size), "/dev/zero"])


def head_cat(bench: Bench, source: Proc | Path, sink: Path | None = None) -> float:
    """The pipe's floor: `head -c N /dev/zero | cat > sink`."""
    return bench.run(Proc(["cat"], stdin=source, stdout=sink))


def measure_transfers(
    bench: Bench, transfers: Mapping[str, Transfer], size: int
) -> Callable[..., list[Figure]]:
    """What every stream script does: each path carries 4 MiB of random data
    once, untimed, and must give it back exactly (or there is no figure); then
    every path is timed with `size` bytes and with size // SMALL (the start-up
    baseline a steady-state figure subtracts), all in the same interleaved
    rounds. Returns figures(case, reference, target=None) for the report."""
    data, copy = bench.path("check"), bench.path("copy")
    write_random(data, (4 << 20) + 12345)
    for name, transfer in transfers.items():
        transfer(bench, data, copy)
        check_same(data, copy, name)
    data.unlink()
    copy.unlink()
    cases: dict[str, Callable[[], float]] = {}
    for amount in (size, size // SMALL):
        for name, transfer in transfers.items():
            cases[f"{name} {amount >> 20} MiB"] = lambda t=transfer, n=amount: t(
                bench, head(n), None
            )
    bench.measure(cases)
    big, small = f" {size >> 20} MiB", f" {(size // SMALL) >> 20} MiB"

    def figures(case: str, reference: str, target: float | None = None) -> list[Figure]:
        return transfer_figures(
            f"{case} ÷ {reference}",
            case + big,
            reference + big,
            (case + small, reference + small),
            targets=(target, None),
        )

    return figures


@dataclass(frozen=True)
class Spread:
    median: float
    q1: float
    q3: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if len(values) >= 2:
            q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        else:
            q1 = q3 = values[0]
        return cls(statistics.median(values), q1, q3, min(values), max(values))


def parser(doc: str, *, rounds: int = MIN_ROUNDS, quick_rounds: int = 3) -> argparse.ArgumentParser:
    """The options every script shares; a script adds its own before main()."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(default_rounds=rounds, quick_rounds=quick_rounds)
    parser.add_argument(
        "--rounds",
        type=int,
        metavar="N",
        help=f"interleaved rounds (default {rounds}, at least {MIN_ROUNDS} unless --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: smaller sizes, {quick_rounds} rounds; its figures are not results",
    )
    parser.add_argument("--pin", action="store_true", help="run every process on one CPU")
    parser.add_argument("--seed", type=int, help="seed of the shuffled orders (default: random)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure here")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds before a hung run is killed (default 600)",
    )
    parser.add_argument(
        "--keep-env",
        action="store_true",
        help="leave PYTHONDONTWRITEBYTECODE / PYTHONPYCACHEPREFIX as they are",
    )
    return parser


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path, cleanup: contextlib.ExitStack):
        self.args = args
        self.workdir = workdir
        self.rounds: int = args.rounds or (args.quick_rounds if args.quick else args.default_rounds)
        self.smoke = self.rounds < MIN_ROUNDS
        self.seed: int = args.seed if args.seed is not None else random.randrange(1 << 32)
        self.rng = random.Random(self.seed)
        self.samples: dict[str, list[float]] = {}
        self._cleanup = cleanup
        self._names = 0

    def at_exit(self, callback: Callable[[], object]) -> None:
        """Run callback when the script ends, also after an error."""
        self._cleanup.callback(callback)

    def path(self, stem: str) -> Path:
        """A new path in the scratch dir; nothing is created there."""
        self._names += 1
        return self.workdir / f"{stem}.{self._names}"

    def run(self, *procs: Proc, clock_from: int = 0) -> float:
        """Seconds from starting the first process until all have exited.

        Processes start in the order given (a receiver before its sender). A
        non-zero exit or a timeout raises BenchError and kills the others.
        clock_from: the clock starts with that process instead (those before
        it are already running, and ready: a server that is up).
        """
        deadline = time.monotonic() + self.args.timeout
        started: list[tuple[Proc, subprocess.Popen[bytes], Path]] = []
        start = time.perf_counter()
        try:
            for index, proc in enumerate(procs):
                if index == clock_from:
                    start = time.perf_counter()
                self._start(proc, started, deadline)
                if proc.ready is not None:
                    until_ready(proc, started[-1][1], deadline)
            finished = wait_all([popen for _, popen, _ in started], deadline)
        except BaseException:
            kill_all([popen for _, popen, _ in started])
            raise
        elapsed = time.perf_counter() - start
        if not finished:
            raise BenchError(
                f"timed out after {self.args.timeout:.0f} s: " + "; ".join(map(str, procs))
            )
        failed = [(proc, popen, err) for proc, popen, err in started if popen.returncode]
        if failed:
            raise BenchError(
                "; ".join(
                    f"`{proc}` exited {popen.returncode}: {tail(err)}"
                    for proc, popen, err in failed
                )
            )
        return elapsed

    def _start(
        self,
        proc: Proc,
        started: list[tuple[Proc, subprocess.Popen[bytes], Path]],
        deadline: float,
        stdout_fd: int | None = None,
    ) -> None:
        # The parent's copies of the child's ends close once the child has them.
        with contextlib.ExitStack() as parent_copies:
            stdin: int | None = subprocess.DEVNULL
            if isinstance(proc.stdin, (Proc, bytes)):
                stdin, write_end = os.pipe()
                parent_copies.callback(os.close, stdin)
                try:
                    if isinstance(proc.stdin, Proc):
                        self._start(proc.stdin, started, deadline, stdout_fd=write_end)
                    elif len(proc.stdin) <= select.PIPE_BUF:
                        os.write(write_end, proc.stdin)
                    else:
                        raise ValueError("bytes on stdin: at most PIPE_BUF; use a file")
                finally:
                    os.close(write_end)
            elif isinstance(proc.stdin, Path):
                stdin = parent_copies.enter_context(proc.stdin.open("rb")).fileno()
            stdout = stdout_fd
            if stdout is None and proc.stdout is not None:
                stdout = open_output(proc.stdout, deadline, [p for _, p, _ in started])
                parent_copies.callback(os.close, stdout)
            err_path = self.workdir / f"stderr.{len(started)}"
            err = parent_copies.enter_context(err_path.open("wb"))
            env = {**os.environ, **proc.env} if proc.env else None
            popen = subprocess.Popen(
                proc.argv,
                stdin=stdin,
                stdout=subprocess.DEVNULL if stdout is None else stdout,
                stderr=err,
                env=env,
                start_new_session=True,  # its own process group, killed as one on failure
            )
            started.append((proc, popen, err_path))

    def measure(self, cases: Mapping[str, Callable[[], float]]) -> dict[str, list[float]]:
        """Seconds of every case, per round: each round runs each case once, in a new order."""
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for number in range(1, self.rounds + 1):
            order = list(cases)
            self.rng.shuffle(order)
            print(f"round {number}/{self.rounds}", file=sys.stderr, flush=True)
            for name in order:
                samples[name].append(cases[name]())
        self.samples.update(samples)
        return samples

    def report(self, title: str, figures: Sequence[Figure], notes: Sequence[str] = ()) -> None:
        """Print the cases and figures (and write --json); targets are information only."""
        results = [Result.of(figure, self.samples) for figure in figures]
        text = [self.header(title)]
        if self.smoke:
            text.append(
                f"SMOKE RUN ({'--quick, ' if self.args.quick else ''}{self.rounds} rounds, "
                f"fewer than {MIN_ROUNDS}): these figures are not results."
            )
        notes = [
            *notes,
            *(
                f"{r.figure.label}: {r.rounds_left_out} round(s) left out "
                "(there the small transfer took longer than the big one)"
                for r in results
                if r.rounds_left_out
            ),
        ]
        text.append(cases_table(self.samples))
        text.append(figures_table(results))
        text.append(
            "\n".join(
                [
                    "ratio: median of per-round ratios (case ÷ reference in the same round); "
                    "IQR and min-max: their spread.",
                    "time ratios: lower is better; speed ratios (marked x): higher is better. "
                    "steady state: a small transfer's time in the same round subtracted.",
                    "PASS/MISS is information only.",
                    *notes,
                ]
            )
        )
        print("\n\n".join(text))
        if self.args.json:
            self.args.json.write_text(
                json.dumps(
                    {
                        "title": title,
                        "settings": self.settings(),
                        "seconds_per_round": self.samples,
                        "figures": [{**asdict(r), "verdict": r.verdict} for r in results],
                    },
                    indent=2,
                )
                + "\n"
            )

    def settings(self) -> dict[str, object]:
        return {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "load": os.getloadavg()[0],
            "pinned": self.args.pin,
            "bytecode_cached": not self.args.keep_env,
            "rounds": self.rounds,
            "seed": self.seed,
            "smoke": self.smoke,
        }

    def header(self, title: str) -> str:
        s = self.settings()
        return (
            f"{title}: Python {s['python']}, {s['cpus']} CPUs, load {s['load']:.2f}, "
            f"{'pinned to one CPU' if s['pinned'] else 'unpinned'}, "
            f"{'bytecode cached' if s['bytecode_cached'] else 'environment as is'}, "
            f"{self.rounds} interleaved rounds, --seed {self.seed}"
        )


def main(
    arg_parser: argparse.ArgumentParser,
    body: Callable[[Bench], None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, set up the scratch dir and environment, run body; 1 if it crashed, hung or lied."""
    args = arg_parser.parse_args(argv)
    if args.rounds is not None and args.rounds < MIN_ROUNDS and not args.quick:
        # A figure from a few rounds on a noisy machine is a coin flip.
        arg_parser.error(
            f"--rounds: at least {MIN_ROUNDS} for a figure (or --quick for a smoke run)"
        )
    if args.rounds is not None and args.rounds < 1:
        arg_parser.error("--rounds: at least 1")
    if not Path(IPCTOOL).exists():
        print(f"bench: no ipctool next to {PYTHON}; install the project first", file=sys.stderr)
        return 1
    if args.pin:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # every child inherits it
    with contextlib.ExitStack() as cleanup:
        scratch = "/dev/shm" if os.path.isdir("/dev/shm") else None
        workdir = Path(tempfile.mkdtemp(prefix="ipctool-bench-", dir=scratch))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        if not args.keep_env:
            cache_bytecode(workdir / "pycache")
        try:
            body(Bench(args, workdir, cleanup))
        except BenchError as err:
            print(f"bench: {err}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


def cache_bytecode(prefix: Path) -> None:
    """Let child Pythons cache bytecode (in the scratch dir) as after a normal install.

    With PYTHONDONTWRITEBYTECODE=1 and an editable checkout, every ipctool
    start would compile its modules from source (+17 ms a call). The
    untimed checks fill the cache.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(prefix)


def open_output(path: Path, deadline: float, started: Sequence[subprocess.Popen[bytes]]) -> int:
    """A file to write, or a FIFO once its reader has opened it (without blocking forever)."""
    if not path.is_fifo():
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
            if time.monotonic() > deadline or any(p.poll() is not None for p in started):
                raise BenchError(f"no reader opened FIFO {path}") from None
            time.sleep(0.001)
            continue
        os.set_blocking(fd, True)
        return fd


def until_ready(proc: Proc, popen: subprocess.Popen[bytes], deadline: float) -> None:
    """Poll proc.ready() until true; the process ending first, or the deadline, fails."""
    assert proc.ready is not None
    while not proc.ready():
        if popen.poll() is not None:
            raise BenchError(f"`{proc}` exited {popen.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise BenchError(f"`{proc}` was never ready")
        time.sleep(0.0002)


def wait_all(procs: Sequence[subprocess.Popen[bytes]], deadline: float) -> bool:
    """Wait for every process; once one fails or time runs out, kill the rest.

    Blocks on pidfds, so waiting adds no wake-ups to the run. False on timeout.
    """
    poller = select.poll()
    pidfds = {os.pidfd_open(proc.pid): proc for proc in procs}
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    try:
        while True:
            for fd, proc in pidfds.items():
                if proc.returncode is None and proc.poll() is not None:
                    poller.unregister(fd)
            running = [proc for proc in procs if proc.returncode is None]
            remaining = deadline - time.monotonic()
            if not running:
                return True
            if any(proc.returncode for proc in procs) or remaining <= 0:
                kill_all(procs)
                return remaining > 0
            poller.poll(remaining * 1000)
    finally:
        for fd in pidfds:
            os.close(fd)


def tail(path: Path) -> str:
    """The end of a process's stderr, for an error line."""
    return path.read_text(errors="replace")[-400:].strip()


def kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill each process's group: a failed process may leave children running."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass(frozen=True)
class Result:
    """A figure as measured: its per-round ratios and their spread."""

    figure: Figure
    ratios: list[float]
    spread: Spread
    case_seconds: float  # medians over the rounds used (after subtracting any baseline)
    reference_seconds: float
    rounds_left_out: int

    @classmethod
    def of(cls, figure: Figure, samples: Mapping[str, Sequence[float]]) -> Result:
        case, reference = samples[figure.case], samples[figure.reference]
        if figure.baseline:
            case = [a - b for a, b in zip(case, samples[figure.baseline[0]], strict=True)]
            reference = [a - b for a, b in zip(reference, samples[figure.baseline[1]], strict=True)]
        # A round where noise made the small transfer the slower one says nothing: left out.
        rounds = [(c, r) for c, r in zip(case, reference, strict=True) if c > 0 and r > 0]
        if not rounds:
            raise BenchError(f"{figure.label}: no round with a usable time")
        ratios = [r / c if figure.speed else c / r for c, r in rounds]
        return cls(
            figure,
            ratios,
            Spread.of(ratios),
            statistics.median(c for c, _ in rounds),
            statistics.median(r for _, r in rounds),
            len(case) - len(rounds),
        )

    @property
    def verdict(self) -> str:
        target = self.figure.target
        if target is None:
            return ""
        good = self.spread.median >= target if self.figure.speed else self.spread.median <= target
        return "PASS" if good else "MISS"

    def amount(self, seconds: float) -> str:
        """A time, or the rate it means when the figure says how much was moved."""
        if self.figure.work is None:
            return duration(seconds)
        return rate(self.figure.work / seconds, self.figure.unit)


def cases_table(samples: Mapping[str, Sequence[float]]) -> str:
    rows = [["case", "median", "IQR", "min-max"]]
    for name, values in samples.items():
        s = Spread.of(values)
        rows.append([name, duration(s.median), durations(s.q1, s.q3), durations(s.low, s.high)])
    return table(rows)


def figures_table(results: Sequence[Result]) -> str:
    rows = [["figure", "case", "reference", "ratio", "IQR", "min-max", "target", ""]]
    for result in results:
        figure, s = result.figure, result.spread
        target = figure.target
        rows.append(
            [
                figure.label,
                result.amount(result.case_seconds),
                result.amount(result.reference_seconds),
                f"{s.median:.2f}{'x' if figure.speed else ''}",
                f"{s.q1:.2f}-{s.q3:.2f}",
                f"{s.low:.2f}-{s.high:.2f}",
                "" if target is None else f"{'>=' if figure.speed else '<='} {target:.2f}",
                result.verdict,
            ]
        )
    return table(rows)


def duration(seconds: float) -> str:
    if seconds < 1e-3:  # a time per operation (bench/sem.py's round trips)
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.1f} ms"


def durations(low: float, high: float) -> str:
    if high >= 1:
        return f"{low:.2f}-{high:.2f} s"
    if high < 1e-3:
        return f"{low * 1e6:.1f}-{high * 1e6:.1f} us"
    return f"{low * 1e3:.1f}-{high * 1e3:.1f} ms"


def rate(per_second: float, unit: str) -> str:
    if unit == "B":
        return f"{per_second / (1 << 30):.2f} GiB/s"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.2f}{suffix} {unit}/s"
    return f"{per_second:.0f} {unit}/s" if per_second >= 100 else f"{per_second:.2f} {unit}/s"


def table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def check_same(expected: Path, got: Path, what: str) -> None:
    """BenchError unless got holds exactly expected's bytes (sha256)."""
    if sha256(got) != sha256(expected):
        sizes = f"{got.stat().st_size} bytes for {expected.stat().st_size}"
        raise BenchError(f"{what} delivered wrong data ({sizes})")


def write_random(path: Path, size: int, seed: int = 1) -> None:
    """size bytes that do not compress (one random MiB, repeated)."""
    block = random.Random(seed).randbytes(1 << 20)
    with path.open("wb") as out:
        for _ in range(size >> 20):
            out.write(block)
        out.write(block[: size & ((1 << 20) - 1)])


def compile_c(source: Path, workdir: Path) -> str:
    """Build a C peer with gcc -O2 into the scratch dir (never into the repo)."""
    binary = workdir / source.stem
    done = subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], capture_output=True, text=True
    )
    if done.returncode:
        raise BenchError(f"gcc {source.name}: {done.stderr.strip()}")
    return str(binary)


def parse_size(text: str) -> int:
    """'1G', '64M', '4096', as head -c takes them (powers of 1024)."""
    match = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 64M, 4096)")
    return int(match[1]) << {"": 0, "K": 10, "M": 20, "G": 30}[match[2]]
