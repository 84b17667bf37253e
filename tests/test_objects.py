"""The core's object model: one /proc view, reserved names, and a contract that
catches a plugin whose clean would remove an object in use."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from test_plugins import good_plugin, ipctool, make_distribution

from ipctool.procfs import ProcView
from ipctool.testing import start_receiver, wait_until_blocked


def test_proc_view_sees_holders_mappers_and_blocked(tmp_path: Path, sysv_key: str) -> None:
    mapped = tmp_path / "mapped"
    mapped.write_bytes(b"\0" * mmap.PAGESIZE)
    code = textwrap.dedent(
        f"""
        import mmap, os, sys
        f = open({str(mapped)!r}, "r+b")
        m = mmap.mmap(f.fileno(), 0)
        r, w = os.pipe()
        print(w, flush=True)
        os.read(r, 1)  # blocks in read on its own pipe
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        write_fd = int(proc.stdout.readline())
        wait_until_blocked(proc.pid)
        view = ProcView()
        st = mapped.stat()
        assert proc.pid in view.mapping_pids(st.st_dev, st.st_ino)
        assert proc.pid in view.holder_pids(st.st_dev, st.st_ino)
        pipe = os.stat(f"/proc/{proc.pid}/fd/{write_fd}")
        holders = view.holders(pipe.st_dev, pipe.st_ino)
        assert {(h.pid, h.access) for h in holders} >= {(proc.pid, "w"), (proc.pid, "r")}
        assert view.command(proc.pid) == "python" or view.command(proc.pid).startswith("python")
        assert os.getpid() not in view.pids or view.holders(pipe.st_dev, pipe.st_ino)
    finally:
        proc.kill()
        proc.wait()


def test_core_names_are_reserved(tmp_path: Path) -> None:
    for name in ("ls", "bridge", "top"):
        good_plugin(tmp_path, dist=f"ipctool-{name}", name=name)
    result = ipctool(tmp_path, "plugins")
    assert result.code == 0, result.err
    for name in ("ls", "bridge", "top"):
        assert f"'{name}' is reserved" in result.err, result.err
    assert ipctool(tmp_path, "ls", "send", "x").code == 2  # no plugin took it


LEAKY_PLUGIN = """
from ipctool.api import Mechanism, hookimpl

@hookimpl
def ipctool_mechanisms():
    return [Mechanism(name="leaky", summary="msgq whose source sees no users.",
                      commands="ipctool_plugins.msgq.commands:app",
                      objects="leaky_source:BlindSource", family="Other")]

@hookimpl
def ipctool_contract_cases():
    from ipctool.api import ContractCase
    from ipctool_plugins.msgq.testing import contract_cases, remove_sysv
    sysv = contract_cases()[0]
    return [ContractCase("leaky", "sysv", sysv.new_target, remove_sysv, "notakey")]
"""

BLIND_SOURCE = """
from ipctool_plugins.msgq.objects import QueueSource

class BlindSource(QueueSource):
    mechanism = "leaky"

    def find(self, target, proc):
        obj = super().find(target, proc)
        obj.users = []  # the defect: a receiver waiting on the queue goes unseen
        return obj
"""

RUN_CONTRACT = """
import sys
from ipctool.testing import check_contract, contract_cases
case = next(c for c in contract_cases() if c.mechanism == "leaky")
try:
    check_contract(case)
except AssertionError as failure:
    print("contract failed:", failure)
    sys.exit(1)
"""


def test_contract_catches_clean_removing_an_object_in_use(tmp_path: Path) -> None:
    make_distribution(tmp_path, "ipctool-leaky", "leaky", "ipctool_leaky", LEAKY_PLUGIN)
    (tmp_path / "leaky_source.py").write_text(BLIND_SOURCE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", RUN_CONTRACT], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "contract failed" in done.stdout and "wanted 6" in done.stdout, done.stdout


def test_inspect_names_a_blocked_receiver_as_user(sysv_key: str) -> None:
    receiver = start_receiver(
        "msgq", "recv", sysv_key, "--create", "--timeout", "60", stdout=subprocess.DEVNULL
    ).process
    try:
        wait_until_blocked(receiver.pid)
        record = ipctool(Path("/nonexistent"), "msgq", "inspect", sysv_key, "--json").json()
        assert receiver.pid in record["users"]
        assert record["stale"] is False and "in use by pid" in record["stale_reason"]
    finally:
        receiver.kill()
        receiver.wait()


def test_clean_stale_goes_on_after_a_failed_removal(capsys) -> None:
    import pytest

    from ipctool.errors import IpcError, PermissionDenied
    from ipctool.objects import IpcObject, ObjectSource
    from ipctool.verbs import run_clean

    class Flaky(ObjectSource):
        mechanism, noun = "flaky", "thing"

        def __init__(self) -> None:
            self.removed: list[str] = []

        def objects(self, proc, scope=None):  # type: ignore[no-untyped-def]
            return [IpcObject("flaky", "k", t, uid=os.geteuid(), idle_seconds=9e9) for t in "abc"]

        def remove(self, obj: IpcObject) -> None:
            if obj.target == "b":
                raise PermissionDenied("b", "read-only file system")
            self.removed.append(obj.target)

    source = Flaky()
    with pytest.raises(IpcError, match="1 of 3 could not be removed"):
        run_clean(
            source, None, stale=True, older_than=1, force=False, dry_run=False, as_json=False
        )
    assert source.removed == ["a", "c"]
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "removed k thing a",
        "failed k thing b: read-only file system",
        "removed k thing c",
    ]


def test_a_waiter_between_two_waits_still_counts(compile_peer, sysv_key: str) -> None:
    """A heartbeat takes a waiter out of msgrcv for a moment; on a busy machine
    that moment can last milliseconds. The /proc view must still see it as a
    user every time, or clean could take its queue for an idle one."""
    import sysv_ipc

    from ipctool_plugins.msgq.objects import blocked_on

    waiter = compile_peer("restless_waiter.c")
    queue = sysv_ipc.MessageQueue(int(sysv_key, 0), sysv_ipc.IPC_CREX, 0o600)
    proc = subprocess.Popen([waiter, sysv_key], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        wait_until_blocked(proc.pid)
        missed = sum(proc.pid not in blocked_on(queue.id, ProcView()) for _ in range(60))
        assert missed == 0, f"the waiter was missed in {missed} of 60 looks"
    finally:
        proc.kill()
        proc.wait()
