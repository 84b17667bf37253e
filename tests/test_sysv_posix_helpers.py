"""What the core and the test kit give every SysV/POSIX plugin: the /proc/sysvipc row
of a key or id, a row's common facts, removal errors naming the object, and the
SysV and POSIX contract cases of a mechanism."""

from __future__ import annotations

import os

import posix_ipc
import pytest
import sysv_ipc

from ipctool.api import (
    NotFound,
    PermissionDenied,
    SysvRow,
    find_sysv_row,
    parse_ipc_target,
    pid_facts,
    removal_errors,
)
from ipctool.testing import ipc_cases

MSG_TABLE = "/proc/sysvipc/msg"


def test_a_row_is_found_by_key_and_by_id(sysv_key: str) -> None:
    queue = sysv_ipc.MessageQueue(int(sysv_key, 0), sysv_ipc.IPC_CREX, 0o640)
    by_key = find_sysv_row(MSG_TABLE, "msqid", parse_ipc_target(sysv_key), "queue")
    by_id = find_sysv_row(MSG_TABLE, "msqid", parse_ipc_target(None, queue.id), "queue")
    assert by_key == by_id and int(by_key["msqid"]) == queue.id
    facts = SysvRow(by_key, "msqid")
    assert (facts.key, facts.id, facts.target) == (int(sysv_key, 0), queue.id, sysv_key)
    fields = facts.fields(0, 5, 3)
    assert (fields["mode"], fields["uid"], fields["last_used"]) == (0o640, os.geteuid(), 5)
    assert facts.named()["creator_uid"] == os.geteuid() and fields["removable"]


def test_a_missing_key_or_id_is_not_found_by_its_label(sysv_key: str) -> None:
    for where in (parse_ipc_target(sysv_key), parse_ipc_target(None, 2**31 - 1)):
        with pytest.raises(NotFound) as caught:
            find_sysv_row(MSG_TABLE, "msqid", where, "queue")
        assert (caught.value.obj, caught.value.reason) == (where.label, "no such queue")


def test_pid_facts_of_a_live_a_dead_and_no_pid() -> None:
    assert pid_facts("last", os.getpid()) == {"last_pid": os.getpid(), "last_alive": True}
    assert pid_facts("last", 0) == {"last_pid": None, "last_alive": False}
    assert pid_facts("last", None) == {"last_pid": None, "last_alive": None}


def test_removal_errors_name_the_object(posix_name: str) -> None:
    with pytest.raises(NotFound) as gone, removal_errors(posix_name, "queue"):
        posix_ipc.unlink_message_queue(posix_name)
    assert (gone.value.obj, gone.value.reason) == (posix_name, "no such queue")
    with pytest.raises(PermissionDenied) as refused, removal_errors("0x1", "segment"):
        raise sysv_ipc.PermissionsError("refused")
    assert (refused.value.obj, refused.value.reason) == ("0x1", "permission denied")
    with pytest.raises(ValueError), removal_errors("0x1", "segment"):
        raise ValueError("not the libraries' to name")


def test_ipc_cases_of_a_mechanism() -> None:
    cases = ipc_cases(
        "demo",
        remove_sysv=print,
        remove_posix=print,
        sysv_table=MSG_TABLE,
        posix_leftovers=list,
        variants=[("sysv-first", {"recv_first": True, "bad_target": "0x"})],
        waits=False,
    )
    assert [str(c) for c in cases] == ["demo-sysv", "demo-posix", "demo-sysv-first"]
    sysv, posix, variant = cases
    assert (sysv.bad_target, posix.bad_target, variant.bad_target) == (
        "notakey",
        "/two/slashes",
        "0x",
    )
    assert sysv.new_target().startswith("0x") and posix.new_target().startswith("/")
    assert not any(c.waits for c in cases) and variant.recv_first and not sysv.recv_first
    assert sysv.leftovers is variant.leftovers and posix.leftovers is list
    assert sysv.leftovers() == []  # this run's keys: none left in the table now


def test_a_zombie_is_not_alive() -> None:
    """Killed but not yet reaped by its parent: kill(pid, 0) still answers, but it
    will never act again, so a peer waiting on it must see it gone."""
    import signal
    import subprocess
    from pathlib import Path

    from ipctool.system import pid_alive

    child = subprocess.Popen(["sleep", "60"])
    try:
        assert pid_alive(child.pid)
        os.kill(child.pid, signal.SIGKILL)
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text().rpartition(")")[2].split()[0] != "Z":
            os.sched_yield()  # polling a condition: the kernel makes it a zombie at once
        assert not pid_alive(child.pid)
    finally:
        child.kill()
        child.wait()
