"""The four msgq verbs. sysv_ipc and posix_ipc load inside the verbs, via .sysv/.posix.

No `from __future__ import annotations` here: typer would then resolve every
annotation from a string when it builds a verb, which costs start-up time.
"""

import os
from typing import Annotated, Any

import typer

from ipctool.api import (
    DEFAULT_MODE,
    STREAM_CHANNEL_BASE,
    Count,
    CString,
    Data,
    Follow,
    Framing,
    IpcTarget,
    Json,
    Lines,
    Mode,
    NotFound,
    Nowait,
    Null,
    ReadyFd,
    Stream,
    TimeoutOption,
    UsageError,
    framing_from_flags,
    new_app,
    parse_ipc_target,
    receive,
    recv_framing,
    send_messages,
)

app = new_app(
    help="""Message queues: SysV (KEY in decimal or 0x-hex, or --id ID) and POSIX (/NAME).

A queue is created owner-only (0600) by the first send unless --mode says otherwise.""",
    epilog="""\b
Examples:
  echo hi | ipctool msgq send 12345 && ipctool msgq recv 12345
  ipctool msgq inspect --json
  ipctool msgq clean --stale --dry-run""",
)

Target = Annotated[
    str | None,
    typer.Argument(metavar="[KEY|/NAME]", help="SysV key (12345, 0x3039) or POSIX /name."),
]
QueueId = Annotated[
    int | None, typer.Option("--id", metavar="ID", min=0, help="A SysV queue by the id ipcs shows.")
]


def resolve(target: str | None, queue_id: int | None) -> IpcTarget:
    """KEY, /NAME or --id: the grammar msgq shares with shm and sem."""
    return parse_ipc_target(target, queue_id)


def backend(posix: bool) -> Any:
    """The module with the kernel work for one kind of queue."""
    if posix:
        from ipctool_plugins.msgq import posix as posix_backend

        return posix_backend
    from ipctool_plugins.msgq import sysv

    return sysv


def open_queue(
    where: IpcTarget, *, create: bool = False, mode: int = DEFAULT_MODE, write: bool = True
) -> Any:
    if where.name is not None:
        from ipctool_plugins.msgq.posix import PosixQueue

        return PosixQueue(where.name, create=create, mode=mode, write=write)
    from ipctool_plugins.msgq.sysv import SysvQueue

    if where.id is not None:
        return SysvQueue.by_id(where.id)
    assert where.key is not None  # an IpcTarget holds exactly one of name, id, key
    return SysvQueue(where.key, create=create, mode=mode)


def new_queue_limit(where: IpcTarget) -> int:
    """The largest message a queue created now would take."""
    if where.posix:
        return backend(True).limits()["msgsize_default"]
    return backend(False).msgmax()


def message_meta(where: IpcTarget, mtype: int | None, priority: int | None, sending: bool) -> int:
    """SysV message type or POSIX priority: the number each message carries."""
    if where.posix:
        if mtype is not None:
            raise UsageError(where.name, "--type is for SysV queues; POSIX queues use --priority")
        return priority or 0
    if priority is not None:
        raise UsageError(None, "--priority is for POSIX queues; SysV queues use --type")
    return mtype if mtype is not None else (1 if sending else 0)


def stream_meta(where: IpcTarget, framing: Framing, mtype: int | None, meta: int) -> int:
    """What selects a SysV stream's start message: types from STREAM_CHANNEL_BASE
    up carry streams' pieces, so --type stays below, and recv without --type
    takes the first start of any type below."""
    if framing is not Framing.STREAM or where.posix:
        return meta
    if mtype is not None and abs(mtype) >= STREAM_CHANNEL_BASE:
        raise UsageError(str(mtype), f"with --stream, --type is below {STREAM_CHANNEL_BASE}")
    if mtype is None and meta == 0:  # recv without --type: any start, never a piece
        return -(STREAM_CHANNEL_BASE - 1)
    return meta


def open_existing(where: IpcTarget, write: bool = True) -> Any:
    """The queue if it exists (None if not, unless it was named by --id)."""
    try:
        return open_queue(where, write=write)
    except NotFound:
        if where.id is not None:
            raise
        return None


TYPE_MAX = 2**31 - 1  # sysv_ipc passes the type as a C int
MessageType = Annotated[
    int | None,
    typer.Option(
        "--type",
        "-t",
        metavar="N",
        min=1,
        max=TYPE_MAX,
        help="SysV message type (1 or more, default 1).",
    ),
]
Priority = Annotated[
    int | None,
    typer.Option(
        "--priority",
        "-p",
        metavar="N",
        min=0,
        max=32767,
        help="POSIX message priority (default 0).",
    ),
]


@app.command()
def send(
    target: Target = None,
    queue_id: QueueId = None,
    mtype: MessageType = None,
    priority: Priority = None,
    lines: Lines = False,
    null: Null = False,
    stream: Stream = False,
    data: Data = None,
    cstring: Annotated[
        bool, typer.Option("--cstring", help="End each message with a NUL, for C's %s.")
    ] = False,
    mode: Mode = DEFAULT_MODE,
    nowait: Nowait = False,
    timeout: TimeoutOption = None,
) -> None:
    """Send stdin to a queue (created if needed): one message, or one per line/record.

    \b
    Examples:
      echo hi | ipctool msgq send 12345
      printf 'a\\nb\\n' | ipctool msgq send 0x3039 --lines --type 7
      ipctool msgq send /jobs --data 'run 42' --priority 5
      tar c dir | ipctool msgq send 12345 --stream
    """
    framing = framing_from_flags(lines, null, stream)
    where = resolve(target, queue_id)
    meta = stream_meta(where, framing, mtype, message_meta(where, mtype, priority, sending=True))
    existing = open_existing(where)

    def create() -> Any:
        queue = existing or open_queue(where, create=True, mode=mode, write=True)
        queue.sending(meta, nowait, timeout)
        if framing is Framing.STREAM and where.posix:
            queue.lock_for_stream()
        return queue

    send_messages(
        framing,
        limit=existing.message_limit if existing else new_queue_limit(where),
        create=create,
        label=where.label,
        data=None if data is None else os.fsencode(data),  # bytes as typed, even non-UTF-8
        terminator=b"\0" if cstring else b"",
        limit_of="the queue's" if existing else "a new queue's",
        channels=not where.posix,  # SysV: each stream's pieces under a type of its own
    )


@app.command()
def recv(
    target: Target = None,
    queue_id: QueueId = None,
    mtype: Annotated[
        int | None,
        typer.Option(
            "--type",
            "-t",
            metavar="N",
            min=-TYPE_MAX,
            max=TYPE_MAX,
            help="SysV: 0 any (default), N>0 that type, N<0 lowest type up to |N|.",
        ),
    ] = None,
    lines: Lines = False,
    null: Null = False,
    stream: Stream = False,
    count: Count = 1,
    follow: Follow = False,
    nowait: Nowait = False,
    timeout: TimeoutOption = None,
    as_json: Json = False,
    cstring: CString = False,
    create: Annotated[
        bool,
        typer.Option(
            "--create", help="Create the queue if missing, so recv can start before send."
        ),
    ] = False,
    mode: Mode = DEFAULT_MODE,
    ready_fd: ReadyFd = None,
) -> None:
    """Receive messages to stdout: one by default, --count N, or --follow.

    POSIX queues give the highest priority first. --follow --nowait drains the
    queue and exits 0 when it is empty; --follow --timeout N stops after N
    seconds without a message and exits 0 (without --follow, a timeout is
    exit 124).

    \b
    Examples:
      ipctool msgq recv 12345
      ipctool msgq recv 12345 --type 1234 --cstring   # from a C program's struct
      ipctool msgq recv /jobs --follow --json
      ipctool msgq recv 12345 --stream > copy.tar
      ipctool msgq recv /jobs --create --follow &   # before any sender
    """
    framing = recv_framing(lines, null, stream, count=count, follow=follow, as_json=as_json)
    where = resolve(target, queue_id)
    selector = stream_meta(where, framing, mtype, message_meta(where, mtype, None, sending=False))
    if create and where.id is not None:
        raise UsageError(None, "--create needs a KEY or /NAME, not --id")
    queue = open_queue(where, create=create, mode=mode, write=False)
    inbox = queue.receiving(selector, nowait, timeout)
    from ipctool.api import announce_ready  # recv's alone: send does not load it

    # Ready: the queue is open, and recv is about to poll it and wait.
    announce_ready(where.label if where.id is None else f"--id={where.id}", ready_fd)
    if framing is Framing.STREAM and where.posix:
        inbox.lock_for_stream(receiving=True)
    receive(
        inbox,
        framing,
        count=count,
        follow=follow,
        nowait=nowait,
        timeout=timeout,
        as_json=as_json,
        cstring=cstring,
        meta_key="priority" if where.posix else "type",
    )

