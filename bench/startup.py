"""Start-up of one ipctool command against three references, measured side by side.

    .venv/bin/python bench/startup.py [--rounds N] [--pin] [--json FILE] [--quick]

Cases: `echo x | ipctool msgq send K` (a fresh queue each time, removed
untimed), `ipctool sem recv K` (a fresh SysV semaphore at 1 each time, taken,
then checked and removed untimed), `ipctool --help`, `ipctool --version`
and the TAB completion request bash makes for `ipctool msgq s<TAB>`.
References: `python -c pass` (the floor: the venv's Python and site),
`python -c "import typer"` (the framework) and `ipcs -q` (a native tool).
Every case is reported as time ÷ each reference; target: the one-message
send and the one-shot sem recv at most 1.3x `import typer` (and --help at
most 2x). See bench/README.md.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import sysv_ipc
from harness import IPCTOOL, PYTHON, Bench, BenchError, Figure, Proc, main, parser
from msgq import Queues

PASS, TYPER, IPCS = "python -c pass", 'python -c "import typer"', "ipcs -q"
SEND, HELP, VERSION = "echo x | ipctool msgq send K", "ipctool --help", "ipctool --version"
TAB = "ipctool msgq s<TAB>"
SEM = "ipctool sem recv K"
SHORT = {
    PASS: "pass",
    TYPER: "typer",
    IPCS: "ipcs",
    SEND: "send",
    HELP: "--help",
    VERSION: "--version",
    TAB: "TAB",
    SEM: "sem recv",
}
# time ÷ import typer, at most
TARGETS = {(SEND, TYPER): 1.3, (SEM, TYPER): 1.3, (HELP, TYPER): 2.0}

# The environment bash's completion function sets for `ipctool msgq s<TAB>`.
TAB_ENV = {"_IPCTOOL_COMPLETE": "complete_bash", "COMP_WORDS": "ipctool msgq s", "COMP_CWORD": "2"}

# Untimed checks of what each fixed command prints (None: only its exit status).
EXPECTED_OUTPUT: dict[str, tuple[Proc, bytes | None]] = {
    PASS: (Proc([PYTHON, "-c", "pass"]), None),
    TYPER: (Proc([PYTHON, "-c", "import typer"]), None),
    IPCS: (Proc(["ipcs", "-q"]), b"Message Queues"),
    HELP: (Proc([IPCTOOL, "--help"]), b"Usage"),
    VERSION: (Proc([IPCTOOL, "--version"]), b"ipctool "),
    TAB: (Proc([IPCTOOL], env=TAB_ENV), b"send"),
}


def send_one(bench: Bench, queues: Queues) -> float:
    """Time a first send: it finds no queue and creates it. Then check and remove it, untimed."""
    key = queues.free_key()
    try:
        elapsed = bench.run(Proc([IPCTOOL, "msgq", "send", str(key)], stdin=b"x\n"))
        queue = sysv_ipc.MessageQueue(key)
        messages = [queue.receive(block=False)[0] for _ in range(queue.current_messages)]
    except sysv_ipc.ExistentialError:
        raise BenchError(f"the one-message send created no queue {key:#x}") from None
    finally:
        queues.remove(key)
    if messages != [b"x\n"]:
        raise BenchError(f"the one-message send left {messages!r} in queue {key:#x}")
    return elapsed


def ipctool_sem_recv(key: int) -> list[str]:
    return [IPCTOOL, "sem", "recv", str(key)]


def sem_recv_one(
    bench: Bench, queues: Queues, recv: Callable[[int], list[str]] = ipctool_sem_recv
) -> float:
    """Time a recv that finds its semaphore at 1 and takes the unit; check it did
    and remove the semaphore, untimed (keys from the queues' range: no queue is
    made on them, and a semaphore's key space is its own). recv: the command
    for a key (bench/sem.py times a C one-shot the same way)."""
    key = queues.free_key()
    semaphore = sysv_ipc.Semaphore(key, sysv_ipc.IPC_CREX, 0o600, 1)
    try:
        elapsed = bench.run(Proc(recv(key)))
        if semaphore.value != 0:
            raise BenchError(f"sem recv left the value of {key:#x} at {semaphore.value}")
    finally:
        semaphore.remove()
    return elapsed


def check_outputs(bench: Bench) -> None:
    """Each command once, untimed: it works, says what it should, and fills the bytecode cache."""
    for name, (proc, expected) in EXPECTED_OUTPUT.items():
        out = bench.path("out")
        bench.run(Proc(proc.argv, stdout=out, env=proc.env))
        if expected is not None and expected not in out.read_bytes():
            raise BenchError(f"`{name}` printed {out.read_bytes()[:200]!r}, without {expected!r}")


def body(bench: Bench) -> None:
    queues = Queues()
    bench.at_exit(queues.remove_all)
    check_outputs(bench)
    send_one(bench, queues)
    sem_recv_one(bench, queues)
    cases: dict[str, Callable[[], float]] = {
        name: (lambda proc=proc: bench.run(proc)) for name, (proc, _) in EXPECTED_OUTPUT.items()
    }
    cases[SEND] = lambda: send_one(bench, queues)
    cases[SEM] = lambda: sem_recv_one(bench, queues)
    bench.measure(cases)
    bench.report(
        "ipctool start-up",
        [
            Figure(f"{SHORT[case]} ÷ {SHORT[ref]}", case, ref, target=TARGETS.get((case, ref)))
            for case in (SEND, SEM, HELP, VERSION, TAB)
            for ref in (PASS, TYPER, IPCS)
        ],
        notes=[
            "Each time is one command from spawn to exit (the send's stdin is a pipe holding "
            '"x\\n"); python is the venv\'s, with its bytecode cached.',
            f"{TAB}: ipctool run with {' '.join(f'{k}={v!r}' for k, v in TAB_ENV.items())}.",
        ],
    )


if __name__ == "__main__":
    sys.exit(main(parser(__doc__, rounds=31, quick_rounds=5), body))
