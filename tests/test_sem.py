"""sem against real kernel semaphores: ipcs/ipcmk, real waiting processes, Ctrl-C,
killed holders, and another user (nobody)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import run_as_nobody
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipctool.testing import (
    assert_one_line_error,
    command,
    run,
    start_receiver,
    wait_until_blocked,
)


def record(target: str) -> dict:
    got = run("sem", "inspect", target, "--json")
    assert got.code == 0, got.err
    return got.json()


def value(target: str) -> int:
    return int(record(target)["value"])


def ipcs_rows() -> list[list[str]]:
    out = subprocess.run(["ipcs", "-s"], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines() if line.startswith("0x")]


# --- send, recv and what ipcs shows ------------------------------------------


def test_send_creates_what_ipcs_shows(sysv_key: str) -> None:
    assert run("sem", "send", sysv_key).code == 0
    row = next(r for r in ipcs_rows() if r[0] == f"0x{int(sysv_key, 16):08x}")
    assert row[3] == "600" and row[4] == "1"  # perms, nsems
    assert value(sysv_key) == 1


def test_posix_semaphore_is_a_0600_file_in_dev_shm(posix_name: str) -> None:
    assert run("sem", "send", posix_name).code == 0
    st = os.stat(f"/dev/shm/sem.{posix_name[1:]}")
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, os.geteuid())
    assert record(posix_name)["mode"] == "0600"


def test_mode_is_exact_whatever_the_umask(target: str) -> None:
    done = subprocess.run(
        [
            "sh",
            "-c",
            f"umask 077; exec {' '.join(command('sem', 'send', target, '--mode', '0644'))}",
        ],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert record(target)["mode"] == "0644"


def test_value_count_recv_and_nowait(target: str) -> None:
    assert run("sem", "send", target, "--value", "2", "--count", "3").code == 0
    assert value(target) == 5
    for _ in range(5):
        got = run("sem", "recv", target, "--nowait")
        assert (got.code, got.stdout, got.stderr) == (0, b"", b"")  # recv prints nothing
    assert_one_line_error(run("sem", "recv", target, "--nowait"), "sem", 5)
    assert_one_line_error(run("sem", "recv", target, "--timeout", "0.1"), "sem", 124)
    assert value(target) == 0


def test_recv_create_starts_at_value(target: str) -> None:
    assert run("sem", "recv", target, "--create", "--value", "1").code == 0
    assert value(target) == 0


def test_guarding_a_critical_section(target: str) -> None:
    """The README's pattern: recv (P) guards the work, send (V) ends it."""

    def sh(*args: str) -> str:
        return " ".join(command("sem", *args))

    script = (
        f"{sh('recv', target, '--create', '--value', '1', '--timeout', '5')}"
        f" && {sh('inspect', target, '--json')} | grep -q '\"value\": 0'"
        f" && {sh('send', target)}"
    )
    assert subprocess.run(["sh", "-c", script], check=False).returncode == 0
    assert value(target) == 1


def test_set_resets_and_is_refused_while_waiting(target: str) -> None:
    assert run("sem", "send", target, "--count", "4").code == 0
    assert run("sem", "send", target, "--set", "0").code == 0
    assert value(target) == 0
    waiter = start_receiver("sem", "recv", target, "--timeout", "60", stderr=subprocess.PIPE)
    try:
        wait_until_blocked(waiter.process.pid)
        assert_one_line_error(run("sem", "send", target, "--set", "1"), "sem", 6)
        assert run("sem", "send", target, "--set", "1", "--force").code == 0
        assert waiter.process.wait(timeout=30) == 0  # the reset woke it: it took the unit
    finally:
        waiter.process.kill()
        waiter.process.wait()
    assert value(target) == 0


def test_set_of_a_missing_semaphore_is_not_found(target: str) -> None:
    assert_one_line_error(run("sem", "send", target, "--set", "1"), "sem", 3)


# --- recv --count: several units, all or none ----------------------------------


def set_value(target: str, units: int) -> None:
    assert run("sem", "send", target, "--value", str(units), "--count", "1").code == 0
    assert run("sem", "recv", target, "--nowait").code == 0
    assert value(target) == units


def test_recv_count_takes_that_many(target: str) -> None:
    set_value(target, 5)
    assert run("sem", "recv", target, "--count", "3").code == 0
    assert value(target) == 2
    assert_one_line_error(run("sem", "recv", target, "--count", "3", "--nowait"), "sem", 5)
    assert value(target) == 2  # POSIX took two and gave them back
    assert run("sem", "recv", target, "-c", "2", "--nowait").code == 0
    assert value(target) == 0


def test_recv_count_waits_for_the_rest(target: str) -> None:
    set_value(target, 1)
    waiter = start_receiver("sem", "recv", target, "--count", "3", stderr=subprocess.PIPE)
    try:
        wait_until_blocked(waiter.process.pid)
        assert record(target)["waiters"] == 1
        assert run("sem", "send", target, "--count", "2").code == 0
        _, err = waiter.process.communicate(timeout=30)
        assert waiter.process.returncode == 0, err
    finally:
        waiter.process.kill()
        waiter.process.wait()
    assert value(target) == 0


def test_recv_count_timeout_leaves_the_value(target: str) -> None:
    set_value(target, 2)
    timed_out = run("sem", "recv", target, "--count", "3", "--timeout", "0.2")
    assert_one_line_error(timed_out, "sem", 124)
    assert value(target) == 2


@pytest.mark.parametrize(("number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_recv_count_interrupted_mid_wait_leaves_the_value(
    target: str, number: int, code: int
) -> None:
    """SysV waits for all three at once; POSIX has taken two when it blocks on the
    third, and gives them back when the wait ends early."""
    set_value(target, 2)
    waiter = start_receiver("sem", "recv", target, "--count", "3", stderr=subprocess.PIPE)
    try:
        wait_until_blocked(waiter.process.pid)
        got = record(target)
        assert got["waiters"] == 1
        assert got["value"] == (0 if target.startswith("/") else 2)
        waiter.process.send_signal(number)
        _, err = waiter.process.communicate(timeout=30)
        assert waiter.process.returncode == code, err
        assert b"Traceback" not in err
    finally:
        waiter.process.kill()
        waiter.process.wait()
    assert value(target) == 2
    assert record(target)["waiters"] == 0


# --- SysV sets: every element --------------------------------------------------


@pytest.fixture
def ipcmk_set() -> Iterator[int]:
    out = subprocess.run(["ipcmk", "-S", "3"], capture_output=True, text=True, check=True)
    semid = int(out.stdout.split(":")[-1])
    yield semid
    subprocess.run(["ipcrm", "-s", str(semid)], capture_output=True, check=False)


def test_ipcmk_set_is_inspected_element_by_element_and_cleaned(ipcmk_set: int) -> None:
    assert run("sem", "send", "--id", str(ipcmk_set), "--index", "2", "--count", "7").code == 0
    assert run("sem", "send", "--id", str(ipcmk_set), "--index", "1").code == 0
    listed = run("sem", "inspect", "--json").json()
    found = next(r for r in listed if r["id"] == ipcmk_set)
    assert found["nsems"] == 3 and found["values"] == [0, 1, 7]
    assert [e["index"] for e in found["elements"]] == [0, 1, 2]
    assert found["elements"][2]["last_pid"] and not found["elements"][2]["last_pid_alive"]
    assert run("sem", "recv", "--id", str(ipcmk_set), "--index", "2", "--nowait").code == 0
    assert record(found["target"])["values"] == [0, 1, 6]
    assert_one_line_error(run("sem", "recv", "--id", str(ipcmk_set), "--index", "3"), "sem", 2)
    cleaned = run("sem", "clean", "--id", str(ipcmk_set))
    assert cleaned.code == 0, cleaned.err
    assert not any(r[1] == str(ipcmk_set) for r in ipcs_rows())


def test_index_creates_a_set_large_enough(sysv_key: str) -> None:
    assert run("sem", "send", sysv_key, "--index", "2").code == 0
    assert record(sysv_key)["values"] == [0, 0, 1]


def test_waiters_are_counted_per_element(sysv_key: str) -> None:
    assert run("sem", "send", sysv_key, "--index", "1", "--value", "0", "--count", "1").code == 0
    waiter = start_receiver("sem", "recv", sysv_key, "--timeout", "60", stderr=subprocess.PIPE)
    try:
        wait_until_blocked(waiter.process.pid)
        got = record(sysv_key)
        assert got["elements"][0]["waiting"] == 1 and got["elements"][1]["waiting"] == 0
        assert waiter.process.pid in got["users"] and got["waiters"] == 1
    finally:
        waiter.process.kill()
        waiter.process.wait()


# --- Ctrl-C, killed holders ---------------------------------------------------


def test_ctrl_c_in_a_waiting_recv_exits_130_and_takes_nothing(target: str) -> None:
    assert run("sem", "send", target, "--set", "0").code == 3  # nothing there yet
    waiter = start_receiver("sem", "recv", target, "--create", stderr=subprocess.PIPE)
    wait_until_blocked(waiter.process.pid)
    waiter.process.send_signal(signal.SIGINT)
    _, err = waiter.process.communicate(timeout=30)
    assert waiter.process.returncode == 130, err
    assert b"Traceback" not in err
    assert run("sem", "send", target).code == 0
    assert value(target) == 1  # the post was not taken by the interrupted wait
    assert record(target)["waiters"] == 0


def hold(target: str, *extra: str) -> tuple[subprocess.Popen, int]:
    """A `sem hold` whose command prints its pid once the unit is held, then sleeps."""
    holder = subprocess.Popen(
        command("sem", "hold", target, "--create", "--value", "1", *extra, "--",
                "sh", "-c", "echo $$; exec sleep 60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None
    line = holder.stdout.readline()
    assert line, holder.stderr.read() if holder.stderr else b""
    return holder, int(line)


def end(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def test_hold_gives_back_however_the_command_ends(target: str) -> None:
    failed = run("sem", "hold", target, "--create", "--value", "1", "--", "sh", "-c", "exit 3")
    assert failed.code == 3 and value(target) == 1
    assert_one_line_error(run("sem", "hold", target, "--", "no-such-command-x"), "sem", 127)
    assert value(target) == 1
    holder, child = hold(target)
    try:
        assert value(target) == 0
        assert holder.pid in record(target)["users"]
        blocked = run("sem", "hold", target, "--nowait", "--", "true")
        assert_one_line_error(blocked, "sem", 5)
        holder.send_signal(signal.SIGINT)  # to hold alone: passed on to the command
        assert holder.wait(timeout=30) == 130
    finally:
        end(child)
        holder.kill()
        holder.wait()
    assert value(target) == 1


def test_sigterm_to_hold_is_passed_on_and_the_unit_given_back(target: str) -> None:
    holder, child = hold(target)
    try:
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=30) == 143
        with pytest.raises(ProcessLookupError):  # the command got it too, and ended
            os.kill(child, 0)
    finally:
        end(child)
        holder.kill()
        holder.wait()
    assert value(target) == 1


def test_a_set_removed_under_a_waiter_is_not_found(sysv_key: str) -> None:
    assert run("sem", "send", sysv_key, "--count", "1").code == 0
    assert run("sem", "recv", sysv_key).code == 0
    waiter = start_receiver("sem", "recv", sysv_key, "--timeout", "60", stderr=subprocess.PIPE)
    try:
        wait_until_blocked(waiter.process.pid)
        assert run("sem", "clean", sysv_key, "--force").code == 0
        _, err = waiter.process.communicate(timeout=30)
        assert waiter.process.returncode == 3, err
        assert b"removed" in err and len(err.splitlines()) == 1
    finally:
        waiter.process.kill()
        waiter.process.wait()


def test_a_killed_sysv_holder_releases(sysv_key: str) -> None:
    holder, child = hold(sysv_key)
    try:
        assert value(sysv_key) == 0
        holder.kill()  # SIGKILL: no code of ours runs; SEM_UNDO gives the unit back
        holder.wait()
        assert value(sysv_key) == 1
    finally:
        end(child)


def test_a_killed_posix_holder_is_reported(posix_name: str) -> None:
    holder, child = hold(posix_name)
    try:
        assert not record(posix_name)["orphaned"]
        holder.kill()
        holder.wait()
        got = record(posix_name)
        assert (got["value"], got["users"], got["orphaned"]) == (0, [], True)
        assert run("sem", "send", posix_name).code == 0  # the documented way to give it back
        assert not record(posix_name)["orphaned"]
    finally:
        end(child)


# --- counts stay right under any interleaving ---------------------------------

E2E = settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@E2E
@given(waiters=st.integers(0, 3), posts=st.lists(st.integers(1, 3), max_size=3))
def test_posts_and_waits_interleaved_keep_the_count(
    target: str, waiters: int, posts: list[int]
) -> None:
    run("sem", "send", target, "--set", "0")  # each example starts from 0 (or nothing)
    started = [
        start_receiver("sem", "recv", target, "--create", "--timeout", "60", stderr=subprocess.PIPE)
        for _ in range(waiters)
    ]
    try:
        for process in (s.process for s in started):
            wait_until_blocked(process.pid)
        for count in posts:
            assert run("sem", "send", target, "--count", str(count)).code == 0
        total = sum(posts)
        woken = min(total, waiters)
        done = [s.process for s in started if s.process.poll() is not None]
        while len(done) < woken:  # a condition, polled: as many waiters as units end
            done = [s.process for s in started if s.process.poll() is not None]
        assert all(p.returncode == 0 for p in done)
        assert len(done) == woken
        assert value(target) == total - woken if (posts or waiters) else True
        for process in (s.process for s in started if s.process.poll() is None):
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 130
        assert value(target) == total - woken if (posts or waiters) else True
    finally:
        for s in started:
            s.process.kill()
            s.process.wait()


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("recv", "0x7effffff"), 3),
        (("inspect", "0x7effffff"), 3),
        (("recv", "/ipctool-no-such-sem"), 3),
        (("send", "/two/slashes"), 2),
        (("send", "/" + "a" * 252), 2),  # sem.NAME must fit in 255 bytes
        (("send", "notakey"), 2),
        (("send", "/x", "--value", "-1"), 2),
        (("send", "0x1", "--value", "32768"), 2),
        (("send", "/x", "--value", str(2**31)), 2),
        (("send", "/x", "--index", "1"), 2),
        (("send", "0x1", "--index", "70000"), 2),  # past SEMMSL and sem_num's 16 bits
        (("send", "/x", "--count", "2", "--set", "1"), 2),
        (("hold", "/x"), 2),
        (("recv", "/x", "--value", "1"), 2),  # --value without --create would be ignored
    ],
)
def test_bad_input(args: tuple[str, ...], code: int) -> None:
    assert_one_line_error(run("sem", *args), "sem", code)


@pytest.mark.parametrize(
    ("target", "count"),
    [("/x", "0"), ("/x", "-1"), ("0x1", "32768"), ("/x", str(2**31)), ("0x1", "0")],
)
def test_recv_count_out_of_range(target: str, count: str) -> None:
    """1 to SEMVMX (sem_op is a short) or SEM_VALUE_MAX; checked before the target is
    opened (neither exists here)."""
    got = run("sem", "recv", target, "--count", count)
    assert_one_line_error(got, "sem", 2)
    assert "--count" in got.err and "no such option" not in got.err


def test_other_users_semaphore_is_permission_denied(target: str) -> None:
    assert run("sem", "send", target).code == 0
    for verb in ("recv", "send"):
        assert_one_line_error(
            run_as_nobody("sem", verb, target, "--nowait" if verb == "recv" else "--count=1"),
            "sem",
            4,
        )
    assert value(target) == 1


def test_post_needs_alter_permission_only(sysv_key: str) -> None:
    """SysV: others may alter (w) without reading (r): a post works, a wait is denied."""
    assert run("sem", "send", sysv_key, "--mode", "0602").code == 0
    assert run_as_nobody("sem", "send", sysv_key).code == 0
    assert value(sysv_key) == 2


def test_value_over_the_limit_is_too_large(sysv_key: str) -> None:
    assert_one_line_error(run("sem", "send", sysv_key, "--value", "32767"), "sem", 7)
    assert run("sem", "inspect", sysv_key).code == 3  # refused before anything was made
    assert run("sem", "send", sysv_key, "--value", "32766").code == 0  # 32766, then +1
    assert_one_line_error(run("sem", "send", sysv_key), "sem", 7)
    assert value(sysv_key) == 32767


# --- clean --stale, in a namespace of its own ---------------------------------


def test_clean_stale_sees_only_what_nobody_uses() -> None:
    """A private IPC namespace and /dev/shm: --stale sees only this script's semaphores."""
    ipctool = " ".join(command())
    script = f"""
      mount -t tmpfs none /dev/shm && I='{ipctool}' &&
      $I sem send 0x1001 && $I sem send /old && $I sem send /stuck --set 0 2>/dev/null;
      $I sem recv /stuck --create --value 1 &&
      {{ $I sem hold 0x1002 --create --value 1 -- sleep 60 > /dev/null 2>&1 & }}
      H=$! &&
      until $I sem inspect 0x1002 --json 2>/dev/null | grep -q '"value": 0'; do :; done &&
      $I sem clean --stale --older-than 0 --json; status=$?
      kill $H; wait $H; exit $status
    """
    done = subprocess.run(
        ["unshare", "--ipc", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = {e["target"]: e for e in json.loads(done.stdout)}
    assert report["0x00001001"]["action"] == "removed"
    assert report["/old"]["action"] == "removed"
    assert report["/stuck"]["action"] == "removed"  # value 0 that nobody maps: a lost unit
    assert report["0x00001002"]["action"] == "skipped"  # its live holder is the last pid
    assert "in use by pid" in report["0x00001002"]["reason"]


def test_help_names_every_verb() -> None:
    for verb in ("send", "recv", "hold", "inspect", "clean"):
        assert run("sem", verb, "--help").code == 0, verb
    assert sys.executable


# --- C peers: the plain calls at the other end ----------------------------------


def test_c_waiter_woken_by_ipctool_and_c_poster_seen(compile_peer, target: str) -> None:
    kind = "posix" if target.startswith("/") else "sysv"
    peer = str(compile_peer("sem_peer.c"))
    assert run("sem", "recv", target, "--create", "--nowait").code == 5  # made, at 0
    waiter = subprocess.Popen([peer, f"{kind}-wait", target], stdout=subprocess.PIPE)
    try:
        wait_until_blocked(waiter.pid)
        got = record(target)
        assert waiter.pid in got["users"] and got["waiters"] == 1
        assert_one_line_error(run("sem", "clean", target), "sem", 6)  # in use
        assert run("sem", "send", target).code == 0
        out, _ = waiter.communicate(timeout=30)
        assert (waiter.returncode, out) == (0, b"taken\n")
    finally:
        waiter.kill()
        waiter.wait()
    subprocess.run([peer, f"{kind}-post", target], check=True)
    assert run("sem", "recv", target, "--nowait").code == 0
    assert value(target) == 0


def test_set_during_a_sysv_hold_ends_where_set_put_it(sysv_key: str) -> None:
    """SETVAL drops the undo records: hold's give-back is taken again as it exits."""
    inner = " ".join(command("sem", "send", sysv_key, "--set", "1"))
    done = run("sem", "hold", sysv_key, "--create", "--value", "1", "--", "sh", "-c", inner)
    assert done.code == 0, done.err
    assert value(sysv_key) == 1
