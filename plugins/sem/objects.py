"""sem's objects for the core's inspect and clean: every SysV set (/proc/sysvipc/sem,
each element through semctl) and every POSIX named semaphore (/dev/shm/sem.*).

A semaphore has no attach count: the kernel does not know who will post or wait
later, or who holds a unit now. What can be seen:
- SysV: per element, its value, the processes waiting for it to rise (semncnt)
  and to reach zero (semzcnt), and the last process to operate on it (sempid);
  and who is blocked in semop/semtimedop on the set right now (/proc).
- POSIX: its value and glibc's count of sleeping waiters (read from the file),
  and the processes that map the file (every process that opened it and has not
  closed it).
In use: waiters, a blocked or mapping process, or a live last operator (SysV).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ipctool.api import (
    IpcObject,
    NotFound,
    ObjectSource,
    ProcView,
    SysvRow,
    find_sysv_row,
    idle_for,
    iso_time,
    parse_ipc_target,
    pid_alive,
    read_table,
    removal_errors,
    user_name,
)

SYSV_TABLE = "/proc/sysvipc/sem"
# semop and semtimedop by machine: a process blocked in one names the set id first.
SEM_SYSCALLS = {"x86_64": {65, 220}, "aarch64": {193, 192}, "riscv64": {193, 192}}


class SemSource(ObjectSource):
    mechanism = "sem"
    noun = "semaphore"
    target_metavar = "KEY|/NAME"
    target_help = "SysV key (12345, 0x3039), POSIX /name, or --id=N."
    id_option = True
    example_target = "12345"
    stale_rule = (
        "not in use: nobody waits on it, and (SysV) no process blocked on it and its last "
        "operators are dead, (POSIX) no process maps it. Nobody can see who merely holds "
        "a unit, so an idle age is needed too"
    )
    columns = (
        ("target", "target"),
        ("kind", "kind"),
        ("id", "id"),
        ("owner", "owner"),
        ("mode", "mode"),
        ("value", "values"),
        ("waiting", "waiters"),
        ("last pid", "last_pids"),
        ("users", "users"),
        ("idle s", "idle_seconds"),
    )
    report_keys = ("value", "waiters")

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        from ipctool_plugins.sem.posix import PREFIX, SHM_DIR

        found = [sysv_object(row, proc) for row in read_table(SYSV_TABLE)]
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(SHM_DIR)):
                if entry.startswith(PREFIX) and len(entry) > len(PREFIX):
                    with contextlib.suppress(NotFound):
                        found.append(posix_object("/" + entry[len(PREFIX) :], proc))
        return found

    def find(self, target: str, proc: ProcView) -> IpcObject:
        where = parse_ipc_target(target)
        if where.name is not None:
            return posix_object(where.name, proc)
        return sysv_object(find_sysv_row(SYSV_TABLE, "semid", where, self.noun), proc)

    def remove(self, obj: IpcObject) -> None:
        from ipctool.api import from_os_error

        try:
            if obj.kind == "posix":
                import posix_ipc

                with removal_errors(obj.target, self.noun):
                    posix_ipc.unlink_semaphore(obj.target)
                return
            from ipctool_plugins.sem import sysv

            assert isinstance(obj.id, int)
            sysv.remove(obj.id)
        except OSError as err:
            if err.errno in (22, 43):  # EINVAL, EIDRM: removed meanwhile
                raise NotFound(obj.target, "no such semaphore") from None
            raise from_os_error(obj.target, err) from None

    def limits(self) -> dict[str, Any]:
        from ipctool_plugins.sem.limits import SEM_VALUE_MAX, SEMVMX

        try:
            with open("/proc/sys/kernel/sem") as f:
                semmsl, semmns, semopm, semmni = (int(x) for x in f.read().split())
        except (OSError, ValueError):
            semmsl = semmns = semopm = semmni = 0
        return {
            "sysv": {
                "semmsl": semmsl,  # elements per set
                "semmns": semmns,  # elements in all sets
                "semopm": semopm,  # operations per semop call
                "semmni": semmni,  # sets
                "semvmx": SEMVMX,  # largest value
            },
            "posix": {"sem_value_max": SEM_VALUE_MAX},
        }

    def describe(self, obj: IpcObject) -> str:
        values = obj.extra.get("values") or []
        shown = "?" if None in values else " ".join(map(str, values))
        return super().describe(obj) + f", value {shown}"


def waiting_note(waiters: int | None, users: set[int]) -> str | None:
    """In use though no process can be named: waiters /proc does not show us
    (another user's, another pid namespace's)."""
    if waiters and not users:
        return f"{waiters} waiter(s) the kernel counts"
    return None


def sysv_object(row: dict[str, str], proc: ProcView) -> IpcObject:
    from ipctool_plugins.sem.sysv import element

    common = SysvRow(row, "semid")
    semid = common.id
    nsems, otime, ctime = common.ints("nsems", "otime", "ctime")
    elements = []
    for index in range(nsems):
        facts: dict[str, Any] = {"index": index, **element(semid, index)}
        facts["last_pid_alive"] = pid_alive(facts["last_pid"] or 0)
        elements.append(facts)
    last_pids = sorted({e["last_pid"] for e in elements if e["last_pid"]})
    live = {pid for pid in last_pids if pid_alive(pid)}
    waiters = counted([e[k] for e in elements for k in ("waiting", "waiting_zero")])
    users = live | blocked_on(semid, proc, waiters)
    values = [e["value"] for e in elements]
    named = common.named()  # key and name lead a sem record, the creator follows elements
    extra: dict[str, Any] = {
        "key": named.pop("key"),
        "name": named.pop("name"),
        "nsems": nsems,
        "value": values[0] if values else None,
        "values": values,
        "waiters": waiters,
        "last_pids": last_pids,
        "elements": elements,
        **named,  # the creator
        "mappers": [],
        "orphaned": orphaned(values, waiters, users),
        "op_time": iso_time(otime),
        "change_time": iso_time(ctime),
    }
    return IpcObject(
        "sem",
        "sysv",
        common.target,
        users=users,
        busy=waiting_note(waiters, users),
        created=None,
        extra=extra,
        **common.fields(otime, ctime),
    )


def counted(numbers: list[int | None]) -> int | None:
    """Their sum, or None when any is unknown (semctl needs read permission)."""
    return None if None in numbers else sum(n for n in numbers if n)


def orphaned(values: list[int | None], waiters: int | None, users: set[int]) -> bool:
    """Every value 0, nobody waiting and nobody using it: a holder that died
    without giving its unit back (POSIX has no undo) would leave exactly this."""
    return bool(values) and all(v == 0 for v in values) and waiters == 0 and not users


def blocked_on(semid: int, proc: ProcView, waiters: int | None) -> set[int]:
    """Processes in semop/semtimedop on the set now. A waiter is not in the call
    for a moment now and then (a timeout or heartbeat signal wakes it, and it
    goes back in): while the kernel counts more waiters than were found, root,
    who sees every process, looks again a few times, briefly."""
    import time

    calls = SEM_SYSCALLS.get(os.uname().machine, set())
    found = set(proc.blocked_pids(calls, semid))
    pause = 0.001
    while waiters and len(found) < waiters and os.geteuid() == 0 and pause < 0.05:
        time.sleep(pause)
        found |= set(ProcView().blocked_pids(calls, semid))
        pause *= 2
    return found


def live_waiters(counted: int | None, mappers: set[int]) -> int | None:
    """glibc's waiter count, where it can be true. A waiter killed in sem_wait is
    never taken off it, but every live waiter maps the semaphore: with no process
    mapping it (and root sees every process's maps), the count is a dead waiter's."""
    if counted and not mappers and os.geteuid() == 0:
        return 0
    return counted


def posix_object(name: str, proc: ProcView) -> IpcObject:
    from ipctool_plugins.sem.posix import path_of, read_state

    path = path_of(name)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise NotFound(name, "no such semaphore") from None
    except OSError as err:
        from ipctool.api import from_os_error

        raise from_os_error(name, err) from None
    value, counted_waiters = read_state(path)
    mappers = set(proc.mapping_pids(st.st_dev, st.st_ino))
    waiters = live_waiters(counted_waiters, mappers)
    values = [value]
    extra: dict[str, Any] = {
        "key": None,
        "name": name,
        "nsems": 1,
        "value": value,
        "values": values,
        "waiters": waiters,
        "waiters_counted": counted_waiters,
        "last_pids": [],
        "elements": [],
        "creator": user_name(st.st_uid),
        "creator_uid": st.st_uid,
        "mappers": sorted(mappers),
        "orphaned": orphaned(values, waiters, mappers),
        "op_time": None,
        "change_time": iso_time(st.st_ctime),
    }
    return IpcObject(
        "sem",
        "posix",
        name,
        uid=st.st_uid,
        mode=st.st_mode & 0o777,
        users=mappers,
        busy=waiting_note(waiters, mappers),
        created=st.st_mtime,  # sem_open writes the file once, when it creates it
        last_used=st.st_mtime,
        idle_seconds=idle_for(st.st_mtime),
        removable=os.geteuid() in (0, st.st_uid),
        extra=extra,
    )
