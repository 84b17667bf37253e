"""msgq's objects for the core's inspect and clean: what the kernel shows of every
SysV queue (/proc/sysvipc/msg) and POSIX queue (the mqueue filesystem).

In use, SysV: a live process among the last sender and receiver, or one blocked
in msgsnd/msgrcv on the queue now (the kernel keeps no other trace of a user).
In use, POSIX: a process holding the queue open.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ipctool.api import (
    IpcObject,
    NotFound,
    ObjectSource,
    PermissionDenied,
    ProcView,
    SysvRow,
    find_sysv_row,
    idle_for,
    iso_time,
    parse_ipc_target,
    pid_alive,
    pid_facts,
    read_table,
    removal_errors,
    user_name,
)

SYSV_TABLE = "/proc/sysvipc/msg"
# msgsnd and msgrcv by machine, for spotting processes blocked on a queue: the native
# calls, then those of 32-bit programs (i386 on x86_64, arm on aarch64), which
# /proc shows by their own numbers, and the old ipc() multiplexer (MSGSND 11, MSGRCV 12
# in its first argument, the queue id in its second).
MSG_SYSCALLS = {"x86_64": {69, 70}, "aarch64": {188, 189}, "riscv64": {188, 189}}
COMPAT_MSG_SYSCALLS = {"x86_64": {401, 402}, "aarch64": {301, 302}}
COMPAT_IPC_SYSCALL = {"x86_64": 117}
IPC_MSGSND, IPC_MSGRCV = 11, 12


class QueueSource(ObjectSource):
    mechanism = "msgq"
    noun = "queue"
    target_metavar = "KEY|/NAME"
    target_help = "SysV key (12345, 0x3039), POSIX /name, or --id=N."
    id_option = True
    example_target = "12345"
    stale_rule = (
        "not in use (SysV: no live process among its last sender and receiver and none "
        "blocked on it now; POSIX: none holding it open)"
    )
    columns = (
        ("target", "target"),
        ("kind", "kind"),
        ("id", "id"),
        ("owner", "owner"),
        ("mode", "mode"),
        ("msgs", "messages"),
        ("bytes", "bytes"),
        ("max bytes", "max_bytes"),
        ("users", "users"),
        ("idle s", "idle_seconds"),
        ("changed", "change_time"),
    )
    report_keys = ("messages",)

    def __init__(self) -> None:
        self._notes: list[str] = []

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        from ipctool_plugins.msgq import mqueuefs

        found = [sysv_object(row, proc) for row in read_table(SYSV_TABLE)]
        directory, note = mqueuefs.directory()
        if note:
            self._notes.append(f"POSIX queues not listed: {note}")
            return found
        for entry in sorted(os.listdir(directory)):
            with contextlib.suppress(NotFound, PermissionDenied):
                found.append(posix_object("/" + entry, proc))
        return found

    def notes(self) -> list[str]:
        return self._notes

    def find(self, target: str, proc: ProcView) -> IpcObject:
        where = parse_ipc_target(target)
        if where.posix:
            return posix_object(where.label, proc)
        return sysv_object(find_sysv_row(SYSV_TABLE, "msqid", where, self.noun), proc)

    def remove(self, obj: IpcObject) -> None:
        with removal_errors(obj.target, self.noun):
            if obj.kind == "posix":
                import posix_ipc

                posix_ipc.unlink_message_queue(obj.target)
            else:
                import sysv_ipc

                sysv_ipc.remove_message_queue(obj.id)

    def limits(self) -> dict[str, Any]:
        from ipctool_plugins.msgq import posix, sysv

        return {"sysv": sysv.limits(), "posix": posix.limits()}

    def describe(self, obj: IpcObject) -> str:
        count = obj.extra.get("messages")
        messages = "" if count is None else f", {count} message{'s' * (count != 1)}"
        return super().describe(obj) + messages


def sysv_object(row: dict[str, str], proc: ProcView) -> IpcObject:
    from ipctool_plugins.msgq.sysv import msgmax

    common = SysvRow(row, "msqid")
    queue_id = common.id
    lspid, lrpid, stime, rtime, ctime = common.ints("lspid", "lrpid", "stime", "rtime", "ctime")
    max_bytes = queue_bytes(queue_id, int(row["qnum"]))
    users = {pid for pid in (lspid, lrpid) if pid_alive(pid)} | blocked_on(queue_id, proc)
    extra: dict[str, Any] = {
        **common.named(),
        "messages": int(row["qnum"]),
        "bytes": int(row["cbytes"]),
        "max_bytes": max_bytes,
        "max_message": msgmax(),
        "max_messages": None,
        **pid_facts("last_send", lspid),
        **pid_facts("last_recv", lrpid),
        "holders": [],
        "send_time": iso_time(stime),
        "recv_time": iso_time(rtime),
        "change_time": iso_time(ctime),
    }
    return IpcObject(
        "msgq",
        "sysv",
        common.target,
        size=int(row["cbytes"]),
        capacity=max_bytes,
        users=users,
        extra=extra,
        **common.fields(stime, rtime, ctime),
    )


def blocked_on(queue_id: int, proc: ProcView) -> set[int]:
    """Processes blocked in msgsnd/msgrcv on this queue now, 64- or 32-bit."""
    machine = os.uname().machine
    calls = MSG_SYSCALLS.get(machine, set()) | COMPAT_MSG_SYSCALLS.get(machine, set())
    found = set(proc.blocked_pids(calls, queue_id))
    multiplexer = COMPAT_IPC_SYSCALL.get(machine)
    if multiplexer is not None:
        found |= set(
            proc.blocked_matching(
                {multiplexer},
                lambda args: args[0] & 0xFFFF in (IPC_MSGSND, IPC_MSGRCV) and args[1] == queue_id,
            )
        )
    return found


def queue_bytes(queue_id: int, messages: int) -> int | None:
    """msg_qbytes, by id (so IPC_PRIVATE queues too), where we may read it."""
    from ipctool_plugins.msgq.byid import queue_bytes as by_id

    return by_id(queue_id, messages)


def posix_object(name: str, proc: ProcView) -> IpcObject:
    import posix_ipc

    from ipctool_plugins.msgq import mqueuefs

    try:
        queue = posix_ipc.MessageQueue(name, 0, read=True, write=False)
    except posix_ipc.ExistentialError:
        raise NotFound(name, "no such queue") from None
    except posix_ipc.PermissionsError:
        queue = None
    if queue is None:  # not readable to us: what the mqueue filesystem shows
        st, fields = mqueuefs.stat(name)
    else:
        try:
            st, fields = os.fstat(queue.mqd), mqueuefs.status(name)
            messages, max_messages = queue.current_messages, queue.max_messages
            max_message = queue.max_message_size
        finally:
            queue.close()
    if queue is None:
        messages = max_messages = max_message = None
    waiting = fields.get("QSIZE")
    capacity = max_messages * max_message if max_messages and max_message else None
    extra: dict[str, Any] = {
        "key": None,
        "name": name,
        "creator": user_name(st.st_uid),
        "creator_uid": st.st_uid,
        "messages": messages,
        "bytes": waiting,
        "max_bytes": capacity,
        "max_message": max_message,
        "max_messages": max_messages,
        **pid_facts("last_send", None),
        **pid_facts("last_recv", None),
        "holders": proc.holder_pids(st.st_dev, st.st_ino),
        "send_time": None,
        "recv_time": None,
        "change_time": iso_time(st.st_mtime),
    }
    return IpcObject(
        "msgq",
        "posix",
        name,
        uid=st.st_uid,
        mode=st.st_mode & 0o777,
        size=waiting,
        capacity=capacity,
        users=extra["holders"],
        last_used=st.st_mtime,
        idle_seconds=idle_for(st.st_mtime),
        removable=os.geteuid() in (0, st.st_uid),
        extra=extra,
    )
