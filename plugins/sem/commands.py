"""sem send, recv and hold: post, wait, and hold a semaphore around a command.

inspect and clean are the core's, from objects.SemSource. The kernel work is in
.sysv (ctypes) and .posix (posix_ipc), imported inside the verbs.

No `from __future__ import annotations` here: typer reads these annotations.
"""

import os
from typing import Annotated, Any

import typer

from ipctool.api import (
    DEFAULT_MODE,
    IpcTarget,
    Mode,
    Nowait,
    ReadyFd,
    Refused,
    TimeoutOption,
    TooLarge,
    UsageError,
    WouldBlock,
    new_app,
    parse_ipc_target,
)
from ipctool_plugins.sem.limits import NAME_MAX, SEM_VALUE_MAX, SEMVMX

app = new_app(
    help="""Semaphores: SysV (KEY in decimal or 0x-hex, or --id ID) and POSIX (/NAME).

send posts (V), recv waits (P) and says by its exit code whether it got it, hold
keeps one for as long as a command runs. A semaphore is created owner-only (0600)
by send, or by recv and hold with --create, starting at --value (default 0).""",
    epilog="""\b
Examples:
  ipctool sem recv /lock --create --value 1 --timeout 5 && work; ipctool sem send /lock
  ipctool sem hold /lock --create --value 1 -- make install
  ipctool sem inspect --json""",
)

Target = Annotated[
    str | None,
    typer.Argument(metavar="[KEY|/NAME]", help="SysV key (12345, 0x3039) or POSIX /name."),
]
SemId = Annotated[
    int | None, typer.Option("--id", metavar="ID", min=0, help="A SysV set by the id ipcs shows.")
]
Index = Annotated[
    int,
    typer.Option(
        "--index",
        metavar="N",
        min=0,
        help="SysV: the element of the set (default 0); a new set gets N+1 elements.",
    ),
]
Value = Annotated[
    int,
    typer.Option(
        "--value",
        metavar="N",
        help="The value a semaphore this command creates starts at (default 0).",
    ),
]
Create = Annotated[
    bool, typer.Option("--create", help="Create the semaphore if missing (at --value).")
]


def resolve(target: str | None, sem_id: int | None, index: int) -> IpcTarget:
    where = parse_ipc_target(target, sem_id)
    if where.posix and index:
        raise UsageError(where.name, "--index is for SysV sets; a POSIX semaphore is one value")
    if where.name is not None and len(os.fsencode(where.name)) > NAME_MAX + 1:
        # glibc names the file sem.NAME: four bytes of the 255 a file name may have
        raise UsageError(where.name, f"a POSIX semaphore's name is 1 to {NAME_MAX} bytes")
    if index:
        from ipctool_plugins.sem.sysv import elements_max

        top = elements_max()
        if index >= top:  # sem_num is 16 bits, and a set has at most SEMMSL elements
            raise UsageError(str(index), f"--index is 0 to {top - 1} (kernel.sem's SEMMSL)")
    return where


def value_max(where: IpcTarget) -> int:
    return SEM_VALUE_MAX if where.posix else SEMVMX


def check_value(where: IpcTarget, value: int, option: str) -> int:
    top = value_max(where)
    if not 0 <= value <= top:
        kind = "POSIX" if where.posix else "SysV"
        raise UsageError(str(value), f"{option} is 0 to {top} for a {kind} semaphore")
    return value


def check_create(value: int, create: bool) -> None:
    """recv and hold make nothing without --create: a --value alone would be ignored."""
    if value and not create:
        raise UsageError(None, "--value is what --create starts a new semaphore at: add --create")


def translate(where: IpcTarget) -> Any:
    """The errors of both kinds as ipctool's, naming the semaphore."""
    import errno

    from ipctool.api import NotFound, TooLarge, from_os_error

    def mapped(exc: Exception) -> Exception | None:
        if not isinstance(exc, OSError) and where.posix:
            from ipctool_plugins.sem.posix import translate as posix_translate

            exc = posix_translate(exc) or exc
        if not isinstance(exc, OSError):
            return None
        if exc.errno in (errno.ENOENT, errno.EINVAL, errno.EIDRM):  # EINVAL: no such id
            gone = " (removed)" if exc.errno == errno.EIDRM else ""
            return NotFound(where.label, f"no such semaphore{gone}")
        if exc.errno in (errno.ERANGE, errno.EOVERFLOW):
            return TooLarge(where.label, f"the value would pass {value_max(where)}")
        if exc.errno == errno.EFBIG:
            return UsageError(where.label, "--index: the set has no such element")
        return from_os_error(where.label, exc)

    return mapped


def open_sem(where: IpcTarget, *, index: int, create: bool, value: int, mode: int) -> Any:
    if where.posix:
        from ipctool_plugins.sem.posix import PosixSem

        assert where.name is not None
        return PosixSem(where.name, create=create, value=value, mode=mode)
    from ipctool_plugins.sem.sysv import SysvSem

    if create and where.id is not None:
        raise UsageError(None, "--create needs a KEY or /NAME, not --id")
    return SysvSem.open(where, index=index, create=create, value=value, mode=mode)


def check_count(where: IpcTarget, count: int) -> int:
    """1 to the largest value: a SysV sem_op is a short, and no value is larger."""
    top = value_max(where)
    if not 1 <= count <= top:
        kind = "POSIX" if where.posix else "SysV"
        raise UsageError(str(count), f"--count is 1 to {top} for a {kind} semaphore")
    return count


def take(
    sem: Any, where: IpcTarget, count: int, nowait: bool, timeout: float | None, undo: bool
) -> None:
    """P: take `count` units, waiting as asked; only a success keeps any.

    SysV takes them in one semop (all or nothing). POSIX has no call that waits
    for several, so they are taken one at a time under one deadline, and a wait
    that ends early (--nowait, --timeout, Ctrl-C, SIGTERM, an error) posts back
    those it took. Signals are held while units are taken, so one that lands as
    a unit is taken ends the command only after it was given back."""
    from ipctool.api import Deadline, interrupts_deferred, wait_for

    step = 1 if where.posix else count  # units per kernel call
    signaled = posix_signal_error() if where.posix else InterruptedError
    deadline = Deadline(timeout)
    taken = 0
    try:
        with interrupts_deferred():
            while taken < count:
                if not sem.try_take(step, undo):
                    if nowait:
                        raise WouldBlock(where.label, short_of(count))
                    wait_for(lambda: sem.take(step, undo), timeout=deadline, obj=where.label,
                             signaled=signaled)  # fmt: skip
                taken += step
    except BaseException:  # Ctrl-C, SIGTERM/SIGHUP (Ended), a timeout, an error
        if taken:
            with interrupts_deferred():  # a second Ctrl-C does not stop the give-back
                sem.post(taken, undo)
        raise


def posix_signal_error() -> type[BaseException]:
    import posix_ipc

    return posix_ipc.SignalError


def short_of(count: int) -> str:
    return "the semaphore is 0" if count == 1 else f"the value is below {count}"


@app.command()
def send(
    target: Target = None,
    sem_id: SemId = None,
    count: Annotated[
        int, typer.Option("--count", "-c", metavar="N", min=1, help="Post N units (default 1).")
    ] = 1,
    set_value: Annotated[
        int | None,
        typer.Option(
            "--set",
            metavar="N",
            help="Set the value to N instead of posting (a reset); refused while "
            "processes wait on it, unless --force.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="--set even while processes wait.")
    ] = False,
    index: Index = 0,
    value: Value = 0,
    mode: Mode = DEFAULT_MODE,
) -> None:
    """Post (V): add --count units, waking as many waiters. Creates a missing
    semaphore (at --value, then posts). Prints nothing.

    \b
    Examples:
      ipctool sem send /lock
      ipctool sem send 0x3039 --count 3
      ipctool sem send 0x3039 --index 2          # element 2 of a SysV set
      ipctool sem send /lock --set 1             # reset a stuck semaphore
    """
    from ipctool.api import naming

    where = resolve(target, sem_id, index)
    check_value(where, value, "--value")
    check_count(where, count)
    if set_value is not None:
        check_value(where, set_value, "--set")
        if count != 1:
            raise UsageError(None, "--set and --count go separately")
    with naming(where.label, translate=translate(where)):
        if set_value is None:
            if value + count > value_max(where):  # before anything is made
                raise TooLarge(where.label, f"--value plus --count would pass {value_max(where)}")
            sem = open_sem(where, index=index, create=where.id is None, value=value, mode=mode)
            sem.post(count)
            return
        sem = open_sem(where, index=index, create=False, value=0, mode=mode)
        waiting = sem.waiters()
        if waiting and not force:
            raise Refused(where.label, f"{waiting} process(es) wait on it; --force sets it anyway")
        sem.set(set_value)


@app.command()
def recv(
    target: Target = None,
    sem_id: SemId = None,
    count: Annotated[
        int,
        typer.Option(
            "--count",
            "-c",
            metavar="N",
            min=1,
            help="Take N units (default 1). SysV: all at once or none; POSIX: one at "
            "a time, those taken posted back if the wait ends early.",
        ),
    ] = 1,
    nowait: Nowait = False,
    timeout: TimeoutOption = None,
    create: Create = False,
    index: Index = 0,
    value: Value = 0,
    mode: Mode = DEFAULT_MODE,
    ready_fd: ReadyFd = None,
) -> None:
    """Wait (P): take one unit (or --count N), waiting while there are too few.
    Prints nothing: the exit code is the answer (0 taken, 5 --nowait found too
    few, 124 timed out, 130 Ctrl-C, 143 SIGTERM; none of these takes anything).

    SysV takes N units in one semop: the value never shows part of them taken.
    POSIX has no such call: the units are taken one by one, so others see the
    value drop while recv waits for the rest, and a recv that ends early posts
    back those it took (two such waiters can each hold some and wait on each
    other until --timeout).

    \b
    Examples:
      ipctool sem recv /lock --timeout 5 && work; ipctool sem send /lock
      ipctool sem recv 0x3039 --nowait || echo busy
      ipctool sem recv /done --create &        # before any sender
      ipctool sem recv 0x3039 --count 3        # three workers have posted
    """
    from ipctool.api import announce_ready, naming

    where = resolve(target, sem_id, index)
    check_value(where, value, "--value")
    check_count(where, count)
    check_create(value, create)
    with naming(where.label, translate=translate(where)):
        sem = open_sem(where, index=index, create=create, value=value, mode=mode)
        announce_ready(where.label if where.id is None else f"--id={where.id}", ready_fd)
        take(sem, where, count, nowait, timeout, undo=False)


@app.command()
def hold(
    target: Target = None,
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="-- COMMAND [ARG...]", help="The command to run while held."),
    ] = None,
    sem_id: SemId = None,
    nowait: Nowait = False,
    timeout: TimeoutOption = None,
    create: Create = False,
    index: Index = 0,
    value: Value = 0,
    mode: Mode = DEFAULT_MODE,
) -> None:
    """Take one unit (P), run COMMAND, and give it back (V) however COMMAND ends:
    its failure, Ctrl-C, SIGTERM. Exits with COMMAND's status (126 not executable,
    127 not found); 5, 124, 130 as recv when the unit never came.

    SysV takes with SEM_UNDO, so even a holder killed with SIGKILL gives the unit
    back (the kernel undoes it). POSIX has no undo: a killed holder's unit is
    lost; inspect shows such a semaphore as value 0 that no process maps, and
    `send` (or `send --set 1`) gives it back. A Ctrl-C or SIGTERM that reaches
    hold alone is passed on to COMMAND, and hold waits for it to end.

    \b
    Examples:
      ipctool sem hold /lock --create --value 1 -- make install
      ipctool sem hold 0x3039 --timeout 30 -- ./backup.sh
    """
    from ipctool.api import interrupts_deferred, naming

    if sem_id is not None and target is not None:  # --id N -- CMD: CMD is no target
        command = [target, *(command or [])]
        target = None
    if not command:
        raise UsageError(None, "name a command to run: hold TARGET -- COMMAND [ARG...]")
    where = resolve(target, sem_id, index)
    check_value(where, value, "--value")
    check_create(value, create)
    undo = not where.posix
    with naming(where.label, translate=translate(where)):
        sem = open_sem(where, index=index, create=create, value=value, mode=mode)
        take(sem, where, 1, nowait, timeout, undo=undo)
    try:
        status = run_command(command)
    finally:
        with interrupts_deferred(), naming(where.label, translate=translate(where)):
            sem.post(1, undo)
    raise typer.Exit(status)


def run_command(command: list[str]) -> int:
    """COMMAND's exit status, as a shell gives it (128+N when killed by signal N).

    Ctrl-C, SIGTERM and SIGHUP that end hold are passed on to COMMAND, and hold
    waits for it, so the unit is given back only once COMMAND is gone."""
    import signal

    from ipctool.api import HeldSignals, IpcError, say, start_command

    child = None
    try:
        with HeldSignals():  # a signal while the child starts is acted on once it has
            child = start_command(command)
        if child is None:
            say(IpcError(command[0], "command not found").line("sem"))
            return 127
        with HeldSignals(forward_to=child) as held:  # each passed on, none ends the wait
            code = child.wait()
        held.raise_first()
    except OSError as err:
        reason = (err.strerror or str(err)).lower()
        say(IpcError(command[0], reason).line("sem"))
        return 126
    except BaseException as stop:  # Ctrl-C, SIGTERM, SIGHUP while it started: pass it on
        if child is not None:
            number = signal.SIGINT if isinstance(stop, KeyboardInterrupt) else signal.SIGTERM
            if isinstance(stop, SystemExit) and isinstance(stop.code, int) and stop.code > 128:
                number = signal.Signals(stop.code - 128)
            if child.poll() is None:
                child.send_signal(number)
            with HeldSignals(forward_to=child):
                child.wait()
        raise
    return 128 - code if code < 0 else code
