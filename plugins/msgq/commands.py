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
    DryRun,
    Follow,
    Force,
    Framing,
    Json,
    Lines,
    Mode,
    NotFound,
    Nowait,
    Null,
    OlderThan,
    PermissionDenied,
    Refused,
    Stale,
    Stream,
    TimeoutOption,
    UsageError,
    format_key,
    framing_from_flags,
    new_app,
    parse_posix_name,
    parse_sysv_key,
    print_json,
    print_table,
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


class Where:
    """A resolved target: exactly one of key, queue_id (SysV) or name (POSIX)."""

    __slots__ = ("key", "name", "queue_id")

    def __init__(
        self, key: int | None = None, queue_id: int | None = None, name: str | None = None
    ) -> None:
        self.key, self.queue_id, self.name = key, queue_id, name

    @property
    def posix(self) -> bool:
        return self.name is not None

    @property
    def label(self) -> str:
        if self.name is not None:
            return self.name
        return format_key(self.key) if self.key is not None else f"id {self.queue_id}"


def resolve(target: str | None, queue_id: int | None) -> Where:
    if target is not None and queue_id is not None:
        raise UsageError(target, "give a KEY, a /NAME or --id, not two of them")
    if queue_id is not None:
        return Where(queue_id=queue_id)
    if target is None:
        raise UsageError(None, "name a queue: KEY, /NAME or --id ID")
    if target.startswith("/"):
        return Where(name=parse_posix_name(target))
    return Where(key=parse_sysv_key(target))


def backend(posix: bool) -> Any:
    """The module with the kernel work for one kind of queue."""
    if posix:
        from ipctool_plugins.msgq import posix

        return posix
    from ipctool_plugins.msgq import sysv

    return sysv


def open_queue(
    where: Where, *, create: bool = False, mode: int = DEFAULT_MODE, write: bool = True
) -> Any:
    if where.posix:
        from ipctool_plugins.msgq.posix import PosixQueue

        return PosixQueue(where.name, create=create, mode=mode, write=write)
    from ipctool_plugins.msgq.sysv import SysvQueue

    if where.queue_id is not None:
        return SysvQueue.by_id(where.queue_id)
    return SysvQueue(where.key, create=create, mode=mode)


def new_queue_limit(where: Where) -> int:
    """The largest message a queue created now would take."""
    if where.posix:
        return backend(True).limits()["msgsize_default"]
    return backend(False).msgmax()


def message_meta(where: Where, mtype: int | None, priority: int | None, sending: bool) -> int:
    """SysV message type or POSIX priority: the number each message carries."""
    if where.posix:
        if mtype is not None:
            raise UsageError(where.name, "--type is for SysV queues; POSIX queues use --priority")
        return priority or 0
    if priority is not None:
        raise UsageError(None, "--priority is for POSIX queues; SysV queues use --type")
    return mtype if mtype is not None else (1 if sending else 0)


def stream_meta(where: Where, framing: Framing, mtype: int | None, meta: int) -> int:
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


def open_existing(where: Where, write: bool = True) -> Any:
    """The queue if it exists (None if not, unless it was named by --id)."""
    try:
        return open_queue(where, write=write)
    except NotFound:
        if where.queue_id is not None:
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
    if create and where.queue_id is not None:
        raise UsageError(None, "--create needs a KEY or /NAME, not --id")
    queue = open_queue(where, create=create, mode=mode, write=False)
    inbox = queue.receiving(selector, nowait, timeout)
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


def all_records() -> list[dict[str, Any]]:
    from ipctool_plugins.msgq import posix, sysv

    found = sysv.records()
    posix_found = posix.records()
    if posix_found is None:
        import sys

        sys.stderr.write(
            "ipctool: msgq: POSIX queues not listed: no mqueue filesystem is mounted "
            f"({posix.MOUNT_HINT})\n"
        )
    return found + (posix_found or [])


def record_for(where: Where) -> dict[str, Any]:
    if where.posix:
        from ipctool_plugins.msgq.posix import record_for_name

        return record_for_name(where.name)
    from ipctool_plugins.msgq import sysv

    if where.queue_id is not None:
        return sysv.record_for_id(where.queue_id)
    return sysv.record_for_key(where.key)


def pid_cell(pid: int | None, alive: bool | None) -> str:
    if not pid:
        return "-"
    return f"{pid}" + ("" if alive else " (gone)")


DEFAULT_STALE_AGE = 86400.0  # clean --stale: a day without a send, receive or change

TABLE_COLUMNS = [
    "target",
    "kind",
    "id",
    "owner",
    "mode",
    "msgs",
    "bytes",
    "max bytes",
    "last send",
    "last recv",
    "open by",
    "changed",
]


def table_row(r: dict[str, Any]) -> list[Any]:
    return [
        r["target"],
        r["kind"],
        r["id"],
        r["owner"],
        r["mode"],
        r["messages"],
        r["bytes"],
        r["max_bytes"],
        pid_cell(r["last_send_pid"], r["last_send_alive"]),
        pid_cell(r["last_recv_pid"], r["last_recv_alive"]),
        " ".join(map(str, r["holders"])) or "-",
        r["change_time"],
    ]


@app.command()
def inspect(
    target: Target = None,
    queue_id: QueueId = None,
    show_limits: Annotated[
        bool, typer.Option("--limits", help="Kernel limits: msgmax, msgmnb, mqueue msg_max...")
    ] = False,
    as_json: Json = False,
) -> None:
    """Show every queue, one queue, or the kernel's limits.

    Without a target: all SysV queues (from /proc/sysvipc/msg) and POSIX queues
    (from the mqueue filesystem, mounted at /dev/mqueue if needed and allowed).

    \b
    Examples:
      ipctool msgq inspect
      ipctool msgq inspect 12345 --json
      ipctool msgq inspect --limits
    """
    if show_limits:
        if target is not None or queue_id is not None:
            raise UsageError(target, "--limits shows the system's limits; drop the queue")
        from ipctool_plugins.msgq import posix, sysv

        values = {"sysv": sysv.limits(), "posix": posix.limits()}
        if as_json:
            print_json(values)
        else:
            rows = [(kind, k, v) for kind, group in values.items() for k, v in group.items()]
            print_table("msgq limits", ["kind", "limit", "value"], rows)
        return
    if target is not None or queue_id is not None:
        record = record_for(resolve(target, queue_id))
        if as_json:
            print_json(record)
        else:
            print_table(f"msgq {record['target']}", ["field", "value"], record.items())
        return
    records = all_records()
    if as_json:
        print_json(records)
    else:
        print_table("msgq queues", TABLE_COLUMNS, map(table_row, records))


def refusal(record: dict[str, Any]) -> str | None:
    """Why clean leaves this queue alone without --force, or None."""
    users = backend(record["kind"] == "posix").in_use_by(record)
    if users:
        return "in use by pid " + ", ".join(map(str, users))
    if record["uid"] != os.geteuid():
        return f"owned by {record['owner']}"
    return None


def describe(record: dict[str, Any]) -> str:
    ident = f" (id {record['id']})" if record["id"] is not None else ""
    count = record["messages"]
    messages = "" if count is None else f", {count} message{'s' * (count != 1)}"
    return f"{record['kind']} queue {record['target']}{ident}{messages}"


@app.command()
def clean(
    target: Target = None,
    queue_id: QueueId = None,
    stale: Stale = False,
    older_than: OlderThan = None,
    force: Force = False,
    dry_run: DryRun = False,
    as_json: Json = False,
) -> None:
    """Remove one queue, or every stale queue with --stale.

    Stale: idle (no send, receive or change) for longer than --older-than
    (default 1d) and not in use: no live process among its last sender and
    receiver or blocked on it now (SysV), none holding it open (POSIX). Queues
    in use or owned by another user are left alone unless --force.

    \b
    Examples:
      ipctool msgq clean 12345
      ipctool msgq clean --stale --older-than 2h --dry-run
      ipctool msgq clean --id 3 --force --json
    """
    if stale == (target is not None or queue_id is not None):
        raise UsageError(None, "name one queue (KEY, /NAME, --id ID) or use --stale")
    if older_than is not None and not stale:
        raise UsageError(None, "--older-than goes with --stale")
    if stale:
        idle = DEFAULT_STALE_AGE if older_than is None else older_than
        candidates = [r for r in all_records() if r["idle_seconds"] > idle]
    else:
        candidates = [record_for(resolve(target, queue_id))]
    results = []
    for record in candidates:
        me = os.geteuid()
        if me != 0 and me not in (record["uid"], record["creator_uid"]):
            if not stale:  # --force cannot help: only owner, creator or root may remove it
                raise PermissionDenied(record["target"], f"owned by {record['owner']}")
            continue
        reason = None if force else refusal(record)
        if reason and not stale:
            raise Refused(record["target"], f"{reason}; --force removes it anyway")
        if reason:
            action = "skipped"
        elif dry_run:
            action = "would remove"
        else:
            backend(record["kind"] == "posix").remove(record)
            action = "removed"
        results.append(
            {
                "target": record["target"],
                "kind": record["kind"],
                "id": record["id"],
                "action": action,
                "reason": reason,
                "messages": record["messages"],
            }
        )
        if not as_json:
            suffix = f": {reason} (--force removes it)" if reason else ""
            print(f"{action} {describe(record)}{suffix}")
    if as_json:
        print_json(results)
