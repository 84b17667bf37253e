"""msgq against real kernel queues, real C peers and util-linux."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import sysv_ipc
from conftest import run_as_nobody, sysv_keys_present

from ipctool.testing import Result, assert_one_line_error, command, run


@pytest.fixture(params=["batches", "sysv_ipc"])
def sysv_calls(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A test that takes this runs twice: with SysV messages moved in the C batches
    (plugins/msgq/_batch.c), and through sysv_ipc alone (IPCTOOL_NO_NATIVE=1)."""
    if request.param == "sysv_ipc":
        monkeypatch.setenv("IPCTOOL_NO_NATIVE", "1")
    else:
        monkeypatch.delenv("IPCTOOL_NO_NATIVE", raising=False)
    return request.param


def ipcs_row(key: str) -> list[str] | None:
    out = subprocess.run(["ipcs", "-q"], capture_output=True, text=True, check=True).stdout
    want = f"0x{int(key, 0):08x}"
    return next((line.split() for line in out.splitlines() if line.startswith(want)), None)


# --- real peers ---------------------------------------------------------------


def test_c_sender_to_ipctool(compile_peer, sysv_key: str) -> None:
    sender = compile_peer("msgq_sender.c", IPCTOOL_TEST_KEY=sysv_key)
    subprocess.run([sender], check=True)
    # The C program sends its whole 88-byte struct: the text, a NUL, padding.
    raw = run("msgq", "recv", sysv_key, "--type", "1234")
    assert raw.code == 0 and len(raw.stdout) == 88
    assert raw.stdout.startswith(b"Hello message\n\0")
    subprocess.run([sender], check=True)
    text = run("msgq", "recv", sysv_key, "--type", "1234", "--cstring")
    assert (text.code, text.stdout) == (0, b"Hello message\n")


def test_ipctool_to_c_receiver(compile_peer, sysv_key: str) -> None:
    receiver = compile_peer("msgq_receiver.c", IPCTOOL_TEST_KEY=sysv_key)
    sent = run("msgq", "send", sysv_key, "--type", "1234", "--cstring", input=b"from ipctool\n")
    assert sent.code == 0, sent.err
    out = subprocess.run([receiver], capture_output=True, check=True).stdout
    assert out == b"Message type 1234: from ipctool\n"
    assert ipcs_row(sysv_key) is None  # the C receiver removes its mailbox


def test_ipcs_shows_queue_with_mode_0600(sysv_key: str) -> None:
    for word in (b"one", b"two"):
        assert run("msgq", "send", sysv_key, input=word).code == 0
    row = ipcs_row(sysv_key)
    assert row is not None, "ipcs -q does not list the queue"
    _key, _id, _owner, perms, used, messages = row
    assert (perms, used, messages) == ("600", "6", "2")


def test_mode_option(sysv_key: str) -> None:
    assert run("msgq", "send", sysv_key, "--mode", "0640", input=b"x").code == 0
    assert ipcs_row(sysv_key)[3] == "640"


def test_ipcmk_queue_is_inspected_and_cleaned() -> None:
    made = subprocess.run(["ipcmk", "-Q"], capture_output=True, text=True, check=True).stdout
    queue_id = made.split()[-1]
    try:
        listed = run("msgq", "inspect", "--json")
        assert listed.code == 0, listed.err
        record = next(r for r in listed.json() if r["id"] == int(queue_id))
        assert record["kind"] == "sysv" and record["mode"] == "0644"
        cleaned = run("msgq", "clean", "--id", queue_id)
        assert cleaned.code == 0, cleaned.err
        ipcs = subprocess.run(["ipcs", "-q"], capture_output=True, text=True, check=True)
        assert queue_id not in [line.split()[1] for line in ipcs.stdout.splitlines()[3:] if line]
    finally:
        subprocess.run(["ipcrm", "-q", queue_id], capture_output=True)


# --- types, priorities, framing ----------------------------------------------


def test_sysv_types_select_as_msgrcv_does(sysv_key: str, sysv_calls: str) -> None:
    for mtype in ("5", "3", "7"):
        assert run("msgq", "send", sysv_key, "--type", mtype, "--data", f"t{mtype}").code == 0
    assert run("msgq", "recv", sysv_key, "--type", "7").stdout == b"t7"
    assert run("msgq", "recv", sysv_key, "--type", "-6").stdout == b"t3"  # lowest <= 6
    assert run("msgq", "recv", sysv_key).stdout == b"t5"


def test_posix_priorities_highest_first(posix_name: str) -> None:
    for prio in ("1", "9", "5"):
        assert run("msgq", "send", posix_name, "--priority", prio, "--data", prio).code == 0
    got = run("msgq", "recv", posix_name, "--count", "3", "--lines")
    assert got.stdout == b"9\n5\n1\n"


def test_lines_and_null_round_trip(sysv_key: str, posix_name: str, sysv_calls: str) -> None:
    for target in (sysv_key, posix_name):
        assert run("msgq", "send", target, "--lines", input=b"a\n\nb c\n").code == 0
        assert run("msgq", "recv", target, "--lines", "--count", "3").stdout == b"a\n\nb c\n"
        assert run("msgq", "send", target, "--null", input=b"x\0y\n\0").code == 0
        assert run("msgq", "recv", target, "--null", "--count", "2").stdout == b"x\0y\n\0"


def stream_through(target: str, data: bytes, tmp_path) -> bytes:
    """Stream mode with sender and receiver running at once (queues hold 16 KiB).

    The receiver writes to a file: a pipe nobody reads yet would stall it."""
    received = tmp_path / "received"
    with open(received, "wb") as out:
        receiver = subprocess.Popen(
            command("msgq", "recv", target, "--stream", "--timeout", "20"),
            stdout=out,
            stderr=subprocess.PIPE,
        )
        sent = run("msgq", "send", target, "--stream", input=data)
        _, err = receiver.communicate(timeout=30)
    assert sent.code == 0, sent.err
    assert receiver.returncode == 0, err
    return received.read_bytes()


def test_stream_mode_large_binary(
    sysv_key: str, posix_name: str, tmp_path, sysv_calls: str
) -> None:
    data = os.urandom(300_000)
    # The receiver may start first and find no queue yet: create it first.
    for target in (sysv_key, posix_name):
        assert run("msgq", "send", target, "--data", "warm-up").code == 0
        assert run("msgq", "recv", target).stdout == b"warm-up"
        assert stream_through(target, data, tmp_path) == data


def test_whole_message_over_limit_creates_nothing(sysv_key: str, posix_name: str) -> None:
    for target in (sysv_key, posix_name):
        result = run("msgq", "send", target, input=b"x" * 9000)
        assert_one_line_error(result, "msgq", 7)
        assert "--stream" in result.err
    assert int(sysv_key, 16) not in sysv_keys_present()
    assert run("msgq", "inspect", posix_name).code == 3


def test_recv_json_text_and_base64(sysv_key: str, posix_name: str, sysv_calls: str) -> None:
    run("msgq", "send", sysv_key, "--type", "4", "--data", "hé")
    run("msgq", "send", sysv_key, "--type", "4", input=b"\xff\x00")
    lines = run("msgq", "recv", sysv_key, "--count", "2", "--json").stdout.splitlines()
    assert json.loads(lines[0]) == {"type": 4, "size": 3, "encoding": "utf-8", "data": "hé"}
    assert json.loads(lines[1]) == {"type": 4, "size": 2, "encoding": "base64", "data": "/wA="}
    run("msgq", "send", posix_name, "--priority", "2", "--data", "p")
    record = json.loads(run("msgq", "recv", posix_name, "--json").stdout)
    assert record == {"priority": 2, "size": 1, "encoding": "utf-8", "data": "p"}


def test_large_messages_are_never_truncated(sysv_key: str, sysv_calls: str) -> None:
    data = os.urandom(8192)  # msgmax: four times sysv_ipc's default buffer
    assert run("msgq", "send", sysv_key, input=data).code == 0
    assert run("msgq", "recv", sysv_key).stdout == data


# --- inspect and clean ---------------------------------------------------------


def test_inspect_one_and_limits(sysv_key: str) -> None:
    run("msgq", "send", sysv_key, "--data", "abc")
    record = run("msgq", "inspect", sysv_key, "--json").json()
    assert record["target"] == f"0x{int(sysv_key, 16):08x}"
    assert (record["messages"], record["bytes"], record["mode"]) == (1, 3, "0600")
    assert record["last_send_alive"] is False and record["last_send_pid"] > 0
    limits = run("msgq", "inspect", "--limits", "--json").json()
    assert set(limits["sysv"]) == {"msgmax", "msgmnb", "msgmni"}
    assert {"msg_max", "msgsize_max", "queues_max"} <= set(limits["posix"])
    human = run("msgq", "inspect", sysv_key)
    assert human.code == 0 and b"0600" in human.stdout


def hold_queue(key: str) -> subprocess.Popen:
    """A live process that sent to the queue and keeps running: the queue is in use."""
    code = (
        "import sys, sysv_ipc, time\n"
        f"q = sysv_ipc.MessageQueue({int(key, 16)}, sysv_ipc.IPC_CREAT, 0o600)\n"
        "q.send(b'held'); print('ready', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert holder.stdout.readline() == b"ready\n"
    return holder


def test_clean_refuses_in_use_without_force(sysv_key: str) -> None:
    holder = hold_queue(sysv_key)
    try:
        refused = run("msgq", "clean", sysv_key)
        assert_one_line_error(refused, "msgq", 6)
        assert f"pid {holder.pid}" in refused.err
        assert ipcs_row(sysv_key) is not None
        dry = run("msgq", "clean", sysv_key, "--force", "--dry-run", "--json")
        assert dry.json()[0]["action"] == "would remove" and ipcs_row(sysv_key) is not None
        assert run("msgq", "clean", sysv_key, "--force").code == 0
        assert ipcs_row(sysv_key) is None
    finally:
        holder.kill()
        holder.wait()


def test_clean_refuses_other_users_queue(sysv_key: str) -> None:
    run("msgq", "send", sysv_key, "--data", "x")
    queue = sysv_ipc.MessageQueue(int(sysv_key, 16))
    queue.uid = 65534  # hand it to nobody
    refused = run("msgq", "clean", sysv_key)
    assert_one_line_error(refused, "msgq", 6)
    assert "owned by nobody" in refused.err
    assert run("msgq", "clean", sysv_key, "--force").code == 0


# `$PYTHON -c "$IDLE" N [PID...]` in a script: exit 0 once `inspect --json` (on
# stdin) lists N queues, each idle for more than a second (what --older-than 1
# asks), and each PID has a thread blocked in msgrcv (a waiter clean must see).
IDLE = """
import json, os, sys
records = json.load(sys.stdin)
def blocked(pid):
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/syscall") as f:
            if f.read().split()[0] in ("70", "188"):  # msgrcv: x86_64, aarch64
                return True
    return False
idle = all(r["idle_seconds"] > 1 for r in records)
sys.exit(not (len(records) == int(sys.argv[1]) and idle and all(map(blocked, sys.argv[2:]))))
"""


def in_fresh_ipc_namespace(script: str) -> subprocess.CompletedProcess:
    """Run shell commands in a new IPC namespace (with its own mqueue mount), so
    --stale sees only the queues the script makes, never another test's. The
    script has $IPCTOOL, $PYTHON and $IDLE. Where /dev/mqueue does not exist
    (some containers), ipctool mounts the namespace's own in private (mqueuefs)."""
    ipctool = " ".join(command())
    mount = "{ ! test -d /dev/mqueue || mount -t mqueue none /dev/mqueue; }"
    body = f"{mount} && IPCTOOL='{ipctool}' && {script}"
    return subprocess.run(
        ["unshare", "--ipc", "--mount", "sh", "-c", body],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHON": sys.executable, "IDLE": IDLE},
    )


def test_clean_stale_in_private_namespace() -> None:
    script = """
      echo a | $IPCTOOL msgq send 0x1001 && echo b | $IPCTOOL msgq send /old &&
      $IPCTOOL msgq clean --stale --older-than 1h --json > fresh.json &&
      { until $IPCTOOL msgq inspect --json | $PYTHON -c "$IDLE" 2; do sleep 0.05; done } &&
      $IPCTOOL msgq clean --stale --older-than 1 --dry-run --json &&
      $IPCTOOL msgq inspect --json | grep -c '"target"' &&
      $IPCTOOL msgq clean --stale --older-than 1 --json &&
      $IPCTOOL msgq inspect --json
    """
    done = in_fresh_ipc_namespace(script.replace("fresh.json", "/dev/null"))
    assert done.returncode == 0, done.stderr
    documents = decode_json_documents(done.stdout)
    dry, count_line, removed, after = documents
    assert {(r["target"], r["action"]) for r in dry} == {
        ("0x00001001", "would remove"),
        ("/old", "would remove"),
    }
    assert count_line == 2  # the dry run removed nothing
    assert {r["action"] for r in removed} == {"removed"} and len(removed) == 2
    assert after == []


def decode_json_documents(text: str) -> list:
    decoder, docs, pos = json.JSONDecoder(), [], 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        doc, pos = decoder.raw_decode(text, pos)
        docs.append(doc)
    return docs


# --- bad input: one line, the right code, nothing created ----------------------


@pytest.mark.parametrize(
    "args",
    [
        ["send", "notakey"],
        ["send", "-5"],
        ["send", "0x100000000"],
        ["send", "0"],
        ["send", "/"],
        ["send", "/a/b"],
        ["send", "0x7e00ffff", "--type", "0"],
        ["send", "0x7e00ffff", "--bogus"],
        ["send", "0x7e00ffff", "--lines", "--stream"],
        ["send", "0x7e00ffff", "--stream", "--type", str(1 << 30)],
        ["send", "/x", "--type", "3"],
        ["recv"],
        ["frobnicate"],
    ],
)
def test_usage_errors(args: list[str]) -> None:
    result = run("msgq", *args, input=b"data")
    assert_one_line_error(result, "msgq", 2)
    assert 0x7E00FFFF not in sysv_keys_present()
    assert not os.path.exists("/dev/mqueue/x")  # what `send /x --type 3` would make


def test_recv_missing_queue_is_not_found() -> None:
    assert_one_line_error(run("msgq", "recv", "0x7e00fffe"), "msgq", 3)
    assert_one_line_error(run("msgq", "recv", "/ipctool-test-none"), "msgq", 3)


def test_sysv_send_needs_only_write_permission(sysv_key: str) -> None:
    """msgsnd needs write permission only; reading the queue's size limit needs read."""
    assert run("msgq", "send", sysv_key, "--mode", "0622", "--data", "root").code == 0
    sent = run_as_nobody("msgq", "send", sysv_key, "--data", "nobody")
    assert sent.code == 0, sent.err
    too_big = run_as_nobody("msgq", "send", sysv_key, input=b"x" * 9000)
    assert_one_line_error(too_big, "msgq", 7)  # msgmax still applies
    got = run("msgq", "recv", sysv_key, "--count", "2", "--lines")
    assert (got.code, got.stdout) == (0, b"root\nnobody\n")


def test_sysv_send_to_a_queue_made_write_only(sysv_key: str) -> None:
    made = run_as_nobody("msgq", "send", sysv_key, "--mode", "0200", "--data", "kept")
    assert made.code == 0, made.err
    assert ipcs_row(sysv_key)[3] == "200"
    assert run("msgq", "recv", sysv_key).stdout == b"kept"


def test_posix_queue_limits_are_named(posix_name: str) -> None:
    """mq_open's EMFILE also means RLIMIT_MSGQUEUE; its ENOSPC means queues_max."""
    limited = subprocess.run(
        ["prlimit", "--msgqueue=100", *command("msgq", "send", posix_name, "--data", "x")],
        capture_output=True,
        check=False,
    )
    result = Result(limited.returncode, limited.stdout, limited.stderr)
    assert_one_line_error(result, "msgq", 1)
    assert "RLIMIT_MSGQUEUE" in result.err and "100 bytes" in result.err, result.err
    assert "files open" not in result.err
    full = in_fresh_ipc_namespace(
        "echo 0 > /proc/sys/fs/mqueue/queues_max && "
        "setpriv --reuid=nobody --regid=nogroup --clear-groups $IPCTOOL msgq send /q --data x"
    )
    assert full.returncode == 1 and full.stderr.count("\n") == 1, full.stderr
    assert "queues_max (0)" in full.stderr, full.stderr


def test_permission_denied_for_nobody(sysv_key: str, posix_name: str, sysv_calls: str) -> None:
    for target in (sysv_key, posix_name):
        assert run("msgq", "send", target, "--data", "root only").code == 0
        assert_one_line_error(run_as_nobody("msgq", "recv", target), "msgq", 4)
        sent = run_as_nobody("msgq", "send", target, "--data", "from nobody")
        assert_one_line_error(sent, "msgq", 4)
        assert_one_line_error(run_as_nobody("msgq", "clean", target, "--force"), "msgq", 4)
        assert run("msgq", "recv", target, "--follow", "--nowait").stdout == b"root only"


# --- faults: Ctrl-C, timeouts, closed pipes ----------------------------------------


# msgsnd, msgrcv, mq_timedsend, mq_timedreceive, poll, ppoll: where a blocked
# ipctool waits (a POSIX queue is waited for by polling its mqd)
BLOCKING_CALLS = {"x86_64": {69, 70, 242, 243, 7, 271}, "aarch64": {188, 189, 182, 183, 73}}
# clock_nanosleep or poll: where a POSIX stream receiver or sender waits for the lock
SLEEP_CALLS = {"x86_64": {230, 7, 271}, "aarch64": {115, 73}}  # or the poll of a pause
READ_CALLS = {"x86_64": {0}, "aarch64": {63}}  # a sender waiting for more of stdin


def wait_until_blocked(pid: int, table: dict[str, set[int]] = BLOCKING_CALLS) -> None:
    """Until the process waits in the kernel on a queue (not still starting up)."""
    calls = table.get(os.uname().machine)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if calls is None:
            time.sleep(1.0)  # no syscall table for this machine: give it time
            return
        with open(f"/proc/{pid}/syscall") as f:
            first = f.read().split()[0]
        if first.isdigit() and int(first) in calls:
            return
        time.sleep(0.02)
    raise AssertionError("the process never blocked on the queue")


def interrupt_when_blocked(args: list[str], input: bytes = b"") -> tuple[int, bytes]:
    proc = subprocess.Popen(
        command(*args), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    proc.stdin.write(input)
    proc.stdin.close()
    wait_until_blocked(proc.pid)
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    return proc.wait(timeout=10), err


def test_ctrl_c_in_blocking_recv_exits_130(sysv_key: str, posix_name: str) -> None:
    for target in (sysv_key, posix_name):
        run("msgq", "send", target, "--data", "x")
        run("msgq", "recv", target)
        assert interrupt_when_blocked(["msgq", "recv", target]) == (130, b"")
        assert interrupt_when_blocked(["msgq", "recv", target, "--follow"]) == (130, b"")


def test_ctrl_c_in_blocked_send_exits_130(sysv_key: str) -> None:
    full = os.urandom(8192)
    for _ in range(2):
        run("msgq", "send", sysv_key, input=full)
    assert interrupt_when_blocked(["msgq", "send", sysv_key], input=full) == (130, b"")
    assert run("msgq", "inspect", sysv_key, "--json").json()["messages"] == 2


def signal_status(pid: int) -> dict[str, int]:
    """The signal masks of /proc/PID/status (SigIgn, SigPnd, ShdPnd...) as numbers."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k], 16) for k in ("SigPnd", "ShdPnd", "SigIgn", "SigCgt")}


def test_background_job_keeps_ignoring_ctrl_c(sysv_key: str) -> None:
    """A shell starts background jobs with SIGINT ignored; ipctool must not undo that."""
    run("msgq", "send", sysv_key, "--data", "x")
    run("msgq", "recv", sysv_key)
    proc = subprocess.Popen(
        command("msgq", "recv", sysv_key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    wait_until_blocked(proc.pid)
    proc.send_signal(signal.SIGINT)
    # An ignored signal is dropped when it is sent: none is pending, and the
    # process still waits in msgrcv. A handler would have ended the wait.
    status = signal_status(proc.pid)
    assert status["SigIgn"] & 1 << signal.SIGINT - 1, "ipctool took SIGINT from the shell"
    assert not (status["SigPnd"] | status["ShdPnd"]) & 1 << signal.SIGINT - 1
    wait_until_blocked(proc.pid)
    assert proc.poll() is None, "a Ctrl-C meant for the shell ended the background job"
    run("msgq", "send", sysv_key, "--data", "still here")
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, b"still here", b"")


def exit_after_blocking(args: list[str], input: bytes = b"") -> tuple[int, bytes]:
    """Run ipctool, see it block in the kernel on the queue, and wait for its exit."""
    proc = subprocess.Popen(
        command(*args), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    proc.stdin.write(input)
    proc.stdin.close()
    wait_until_blocked(proc.pid)
    err = proc.stderr.read()
    return proc.wait(timeout=30), err


def test_timeout_on_empty_queue(sysv_key: str, posix_name: str) -> None:
    for target in (sysv_key, posix_name):
        run("msgq", "send", target, "--data", "x")
        run("msgq", "recv", target)
        assert run("msgq", "recv", target, "--nowait").code == 5
        code, err = exit_after_blocking(["msgq", "recv", target, "--timeout", "1"])
        assert_one_line_error(Result(code, b"", err), "msgq", 124)  # it waited, and gave up


def test_follow_timeout_is_an_idle_limit_that_ends_with_0(sysv_key: str) -> None:
    run("msgq", "send", sysv_key, "--lines", input=b"1\n2\n")
    followed = run("msgq", "recv", sysv_key, "--follow", "--lines", "--timeout", "0.2")
    assert (followed.code, followed.stdout, followed.stderr) == (0, b"1\n2\n", b"")
    assert_one_line_error(run("msgq", "recv", sysv_key, "--timeout", "0.2"), "msgq", 124)


def test_nowait_and_drain(sysv_key: str, sysv_calls: str) -> None:
    run("msgq", "send", sysv_key, "--lines", input=b"1\n2\n")
    drained = run("msgq", "recv", sysv_key, "--follow", "--nowait", "--lines")
    assert (drained.code, drained.stdout) == (0, b"1\n2\n")
    assert_one_line_error(run("msgq", "recv", sysv_key, "--nowait"), "msgq", 5)


def test_follow_into_closed_pipe_ends_quietly(sysv_key: str) -> None:
    run("msgq", "send", sysv_key, "--lines", input=b"first\nsecond\n")
    shell = f"{' '.join(command())} msgq recv {sysv_key} --follow --lines | head -1"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=20)
    assert done.stdout == b"first\n"
    assert done.stderr == b""


def numbered(count: int) -> list[bytes]:
    return [b"message %06d" % i for i in range(count)]


def drain(target: str) -> list[bytes]:
    got = run("msgq", "recv", target, "--lines", "--follow", "--nowait")
    assert got.code == 0, got.err
    return got.stdout.splitlines()


def test_a_reader_that_leaves_takes_only_what_it_read(
    sysv_key: str, posix_name: str, sysv_calls: str
) -> None:
    """`recv --follow | head -1` with many queued: only the line head printed leaves
    the queue. recv takes the next message only once the pipe has been read empty,
    and puts back what the reader left unread in the pipe (at the end)."""
    sent = numbered(100)
    for target in (sysv_key, posix_name):
        many = sent if target == sysv_key else sent[:10]  # a POSIX queue holds 10
        assert run("msgq", "send", target, "--lines", input=b"\n".join(many) + b"\n").code == 0
        shell = f"{' '.join(command())} msgq recv {target} --follow --lines | head -1"
        done = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=30)
        assert (done.stdout, done.stderr) == (many[0] + b"\n", b"")
        rest = drain(target)
        assert sorted(rest) == many[1:], f"{target}: {len(rest)} of {len(many) - 1} left"


# Reads one line byte by byte, waits until recv has written the next message into the
# pipe, and leaves without reading it: the window between recv's check and its write.
LEAVING_READER = """
import array, fcntl, os, sys, termios, time
line = b""
while not line.endswith(b"\\n"):
    line += os.read(0, 1)
sys.stdout.buffer.write(line)
sys.stdout.flush()
waiting = array.array("i", [0])
while not waiting[0]:
    fcntl.ioctl(0, termios.FIONREAD, waiting)
    time.sleep(0.001)
"""


def test_a_message_written_after_the_readers_last_read_goes_back(sysv_key: str) -> None:
    sent = numbered(20)
    run("msgq", "send", sysv_key, "--lines", input=b"\n".join(sent) + b"\n")
    reader = f"{sys.executable} -c '{LEAVING_READER}'"
    shell = f"{' '.join(command())} msgq recv {sysv_key} --follow --lines | {reader}"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=30)
    assert (done.stdout, done.stderr) == (sent[0] + b"\n", b"")
    assert drain(sysv_key) == sent[2:] + sent[1:2]  # the unread one, put back at the end


@pytest.mark.parametrize("framing", [["--lines"], ["--json"], []], ids=str)
def test_messages_not_written_are_put_back(
    sysv_key: str, posix_name: str, framing: list[str], sysv_calls: str
) -> None:
    sent = numbered(5)
    for target in (sysv_key, posix_name):
        assert run("msgq", "send", target, "--lines", input=b"\n".join(sent) + b"\n").code == 0
        with open("/dev/full", "wb") as full:
            done = subprocess.run(
                command("msgq", "recv", target, "--count", "3", *framing),
                stdout=full,
                stderr=subprocess.PIPE,
                timeout=30,
            )
        result = Result(done.returncode, b"", done.stderr)
        assert_one_line_error(result, "msgq", 1)
        assert "stdout: no space left on device" in result.err
        assert "3 messages" in result.err and "put back" in result.err, result.err
        assert drain(target) == sent[3:] + sent[:3]  # put back at the end, in order


def test_messages_that_cannot_go_back_are_said_lost(sysv_key: str) -> None:
    assert run("msgq", "send", sysv_key, "--mode", "0644", "--data", "only").code == 0
    shell = f"setpriv --reuid=nobody --regid=nogroup --clear-groups {' '.join(command())}"
    done = subprocess.run(
        ["bash", "-c", f"{shell} msgq recv {sysv_key} > /dev/full"], capture_output=True
    )
    result = Result(done.returncode, b"", done.stderr)
    assert_one_line_error(result, "msgq", 1)
    assert "1 message" in result.err and "lost" in result.err, result.err


def test_a_reader_gone_before_the_write_loses_nothing(sysv_key: str) -> None:
    sent = numbered(3)
    run("msgq", "send", sysv_key, "--lines", input=b"\n".join(sent) + b"\n")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            command("msgq", "recv", sysv_key, "--lines", "--count", "2"),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=30,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, b"")
    assert drain(sysv_key) == sent[1:] + sent[:1]  # one taken, not written, put back


def test_follow_notices_closed_pipe_while_waiting(sysv_key: str) -> None:
    run("msgq", "send", sysv_key, "--data", "only")
    proc = subprocess.Popen(
        command("msgq", "recv", sysv_key, "--follow", "--lines"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.readline() == b"only\n"
    proc.stdout.close()  # the reader goes away; no further message will come
    assert proc.wait(timeout=10) == 141
    assert proc.stderr.read() == b""


def test_send_to_full_queue_waits_then_times_out(
    sysv_key: str, posix_name: str, sysv_calls: str
) -> None:
    full = os.urandom(8192)
    for _ in range(2):  # 2 x 8 KiB fill a SysV queue of 16 KiB
        assert run("msgq", "send", sysv_key, input=full).code == 0
    for _ in range(10):  # a POSIX queue holds msg_default (10) messages
        assert run("msgq", "send", posix_name, "--data", "x").code == 0
    for target, data in ((sysv_key, full), (posix_name, b"x")):
        assert_one_line_error(run("msgq", "send", target, "--nowait", input=data), "msgq", 5)
        code, err = exit_after_blocking(["msgq", "send", target, "--timeout", "1"], data)
        assert_one_line_error(Result(code, b"", err), "msgq", 124)  # it waited, and gave up


def test_private_queue_by_id(sysv_calls: str) -> None:
    queue = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, 0o600)
    queue_id = str(queue.id)
    try:
        assert queue.key == 0
        sent = run("msgq", "send", "--id", queue_id, "--type", "3", input=b"private\xffbytes")
        assert sent.code == 0, sent.err
        got = run("msgq", "recv", "--id", queue_id, "--json").json()
        assert (got["type"], got["encoding"], got["size"]) == (3, "base64", 13)
        assert_one_line_error(run("msgq", "recv", "--id", queue_id, "--nowait"), "msgq", 5)
        record = run("msgq", "inspect", "--id", queue_id, "--json").json()
        assert (record["target"], record["key"]) == (f"--id={queue_id}", 0)
        assert (
            run("msgq", "inspect", record["target"], "--json").code == 0
        )  # passes back as one word
        queue.max_size = 100  # msg_qbytes: a bigger message would block forever
        too_big = run("msgq", "send", "--id", queue_id, "--timeout", "5", input=b"x" * 200)
        assert_one_line_error(too_big, "msgq", 7)
        assert "100-byte limit" in too_big.err
        assert run("msgq", "clean", "--id", queue_id).code == 0
        assert_one_line_error(run("msgq", "recv", "--id", queue_id), "msgq", 3)
    finally:
        with contextlib.suppress(sysv_ipc.ExistentialError):
            queue.remove()


def test_a_batch_stopped_by_a_large_message_is_written_whole(sysv_calls: str, tmp_path) -> None:
    """By id, recv's buffer is msg_qbytes when that is below msgmax: a larger message
    waiting behind small ones stops the batch (E2BIG). The small ones are written
    first, then the buffer grows to msgmax and the large one comes too."""
    queue = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, 0o600)
    try:
        for data in (b"small1", b"small2", b"x" * 200):
            queue.send(data, False)
        queue.max_size = 100  # below what waits: the buffer by id is 100 bytes
        out = tmp_path / "out"
        with open(out, "wb") as file:  # into a file: one batch, not a message at a time
            done = subprocess.run(
                command("msgq", "recv", "--id", str(queue.id), "--lines", "--count", "3"),
                stdout=file,
                stderr=subprocess.PIPE,
                timeout=30,
            )
        assert (done.returncode, done.stderr) == (0, b"")
        assert out.read_bytes() == b"small1\nsmall2\n" + b"x" * 200 + b"\n"
    finally:
        queue.remove()


def test_recv_create_lets_the_receiver_start_first(sysv_key: str, posix_name: str) -> None:
    for target in (sysv_key, posix_name):
        receiver = subprocess.Popen(
            command("msgq", "recv", target, "--create", "--timeout", "10"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while run("msgq", "inspect", target, "--json").code != 0:  # wait for it to exist
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert run("msgq", "inspect", target, "--json").json()["mode"] == "0600"
        assert run("msgq", "send", target, "--data", "late sender").code == 0
        out, err = receiver.communicate(timeout=10)
        assert (receiver.returncode, out, err) == (0, b"late sender", b"")


def test_clean_stale_skips_queues_in_use_or_not_ours() -> None:
    script = """
      $IPCTOOL msgq send 0x2001 --data idle || exit 1
      $IPCTOOL msgq recv 0x2002 --create --timeout 30 > /dev/null &
      waiter=$!
      setpriv --reuid=nobody --regid=nogroup --clear-groups $IPCTOOL msgq send 0x2003 --data n
      $PYTHON -c "$THREAD_WAITER" &
      thread_waiter=$!
      until $IPCTOOL msgq inspect --json | $PYTHON -c "$IDLE" 4 $waiter $thread_waiter; do
        sleep 0.05
      done
      $IPCTOOL msgq clean --stale --older-than 1 --json
      status=$?
      kill $waiter $thread_waiter
      exit $status
    """
    thread_waiter = (  # blocked in msgrcv in a thread other than the main one
        "import sysv_ipc, threading\n"
        "q = sysv_ipc.MessageQueue(0x2004, sysv_ipc.IPC_CREAT, 0o600)\n"
        "threading.Thread(target=q.receive).start()\n"
    )
    script = f"THREAD_WAITER='{thread_waiter}'; {script}"
    done = in_fresh_ipc_namespace(script)
    assert done.returncode == 0, done.stderr
    actions = {r["target"]: (r["action"], r["reason"]) for r in json.loads(done.stdout)}
    assert actions["0x00002001"] == ("removed", None)
    assert actions["0x00002002"][0] == "skipped" and "in use by pid" in actions["0x00002002"][1]
    assert actions["0x00002003"] == ("skipped", "owned by nobody")
    assert actions["0x00002004"][0] == "skipped", actions["0x00002004"]


def test_stdin_and_stdout_failures_are_named(sysv_key: str) -> None:
    closed = subprocess.run(
        ["bash", "-c", f"{' '.join(command())} msgq send {sysv_key} <&-"], capture_output=True
    )
    assert closed.returncode == 1
    assert closed.stderr.decode().strip() == "ipctool: msgq: stdin: bad file descriptor"
    assert int(sysv_key, 16) not in sysv_keys_present()  # nothing created
    run("msgq", "send", sysv_key, "--data", "x")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            command("msgq", "recv", sysv_key), stdout=full, stderr=subprocess.PIPE
        )
    line = done.stderr.decode().strip()
    assert line.startswith("ipctool: msgq: stdout: no space left on device"), line
    key = int(sysv_key, 16)
    assert line.endswith(f"1 message not written put back in 0x{key:08x} (at the end)"), line


def queue_exists(target: str) -> bool:
    if target.startswith("/"):
        return run("msgq", "inspect", target, "--json").code != 3
    return int(target, 16) in sysv_keys_present()


@pytest.mark.parametrize("framing", [[], ["--lines"], ["--null"], ["--stream"]], ids=str)
def test_closed_stdin_creates_nothing(sysv_key: str, posix_name: str, framing: list[str]) -> None:
    for target in (sysv_key, posix_name):
        shell = " ".join([*command("msgq", "send", target), *framing, "<&-"])
        closed = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=30)
        assert (closed.returncode, closed.stderr) == (
            1,
            b"ipctool: msgq: stdin: bad file descriptor\n",
        )
        assert not queue_exists(target), f"{target} was created"


def feed_until_refused(args: list[str], unit: bytes) -> tuple[Result, int]:
    """Run ipctool with stdin a pipe fed `unit` over and over until ipctool stops
    reading; returns its result and how many bytes it was given."""
    proc = subprocess.Popen(
        command(*args),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        bufsize=0,  # nothing is left in a buffer when ipctool stops reading
    )
    given = 0
    block = unit * (65536 // len(unit))
    with contextlib.suppress(BrokenPipeError):
        while given < 1 << 30:  # a bound for the test only: ipctool must stop far earlier
            proc.stdin.write(block)
            given += len(block)
        proc.stdin.close()
    err = proc.stderr.read()
    return Result(proc.wait(timeout=30), b"", err), given


@pytest.mark.parametrize(("framing", "unit"), [("--lines", b"\0"), ("--null", b"y\n")])
def test_endless_record_stops_at_the_limit(
    sysv_key: str, posix_name: str, framing: str, unit: bytes
) -> None:
    """A record without its separator is refused once it passes the limit (exit 7),
    having read about the limit, not all of stdin; the first record creates nothing."""
    for target in (sysv_key, posix_name):
        result, given = feed_until_refused(["msgq", "send", target, framing], unit)
        assert_one_line_error(result, "msgq", 7)
        assert "record" in result.err
        assert given < 1 << 20, f"ipctool read {given} bytes of one endless record"
        assert not queue_exists(target)


def test_record_over_the_limit_after_others(sysv_key: str) -> None:
    data = b"first\nsecond\n" + b"x" * 100_000 + b"\nnever\n"
    result = run("msgq", "send", sysv_key, "--lines", input=data)
    assert_one_line_error(result, "msgq", 7)
    assert "earlier records were sent" in result.err
    got = run("msgq", "recv", sysv_key, "--lines", "--follow", "--nowait")
    assert (got.code, got.stdout) == (0, b"first\nsecond\n")


def test_messages_received_before_an_error_are_written(sysv_calls: str) -> None:
    script = """
      $IPCTOOL msgq send 0x3001 --data small1 && $IPCTOOL msgq send 0x3001 --data small2 &&
      head -c 5000 /dev/zero | $IPCTOOL msgq send 0x3001 &&
      echo 4096 > /proc/sys/kernel/msgmax &&
      $IPCTOOL msgq recv 0x3001 --count 3
      echo " exit=$?"
    """
    done = in_fresh_ipc_namespace(script)
    assert done.stdout == "small1small2 exit=7\n", (done.stdout, done.stderr)
    assert "larger than msgmax" in done.stderr


def test_follow_receiver_grows_its_buffer_when_msgmax_is_raised(
    tmp_path, sysv_calls: str
) -> None:
    """A receiver sizes its buffer to msgmax when it starts; a larger message sent
    after msgmax was raised is received whole, not refused as too large."""
    script = """
      $IPCTOOL msgq send 0x3002 --data small || exit 1
      $IPCTOOL msgq recv 0x3002 --follow --timeout 30 > out &
      receiver=$!
      until [ -s out ]; do sleep 0.01; done   # it has started: "small" arrived
      echo 65536 > /proc/sys/kernel/msgmax
      echo 65536 > /proc/sys/kernel/msgmnb
      $PYTHON -c "$GROW" && head -c 12000 /dev/urandom > big && $IPCTOOL msgq send 0x3002 < big
      $IPCTOOL msgq send 0x3002 --data end || exit 1
      until [ $(wc -c < out) -ge 12008 ]; do
        kill -0 $receiver 2>/dev/null || { wait $receiver; echo "receiver exit $?"; exit 1; }
        sleep 0.01
      done
      kill $receiver; wait $receiver  # a background job ignores SIGINT: TERM ends it
      { printf small; cat big; printf end; } | cmp - out && echo same
    """
    grow = "import sysv_ipc; sysv_ipc.MessageQueue(0x3002).max_size = 65536"  # msg_qbytes
    done = in_fresh_ipc_namespace(f"GROW='{grow}'; cd {tmp_path}; {script}")
    assert done.stdout == "same\n", (done.stdout, done.stderr)


def test_ctrl_c_while_draining_loses_nothing(sysv_key: str, tmp_path, sysv_calls: str) -> None:
    sent = [f"{i:06d}" for i in range(300_000)]  # about 0.5 s of traffic to interrupt
    for trial, received in enumerate((1, 100_000)):  # interrupt after this many messages
        proc = subprocess.Popen(command("msgq", "send", sysv_key, "--lines"), stdin=subprocess.PIPE)
        feeder = threading.Thread(
            target=proc.communicate, args=("".join(s + "\n" for s in sent).encode(),)
        )
        feeder.start()
        out_path = tmp_path / f"out{trial}"
        with open(out_path, "wb") as out:
            receiver = subprocess.Popen(
                command("msgq", "recv", sysv_key, "--lines", "--follow", "--create"),
                stdout=out,
                stderr=subprocess.PIPE,
            )
            wait_for_size(out_path, 7 * received, receiver)  # 7 bytes a line
            receiver.send_signal(signal.SIGINT)
            assert receiver.wait(timeout=10) == 130
        # The rest, exactly as many as were not received, while the sender finishes
        # (into a file: into a pipe, recv would take one message at a time).
        got = out_path.read_bytes().decode().split()
        with open(tmp_path / "rest", "wb") as rest:
            count = str(len(sent) - len(got))
            drained = subprocess.run(
                command("msgq", "recv", sysv_key, "--lines", "-c", count), stdout=rest
            )
        feeder.join(timeout=30)
        assert (drained.returncode, proc.returncode) == (0, 0)
        got += (tmp_path / "rest").read_bytes().decode().split()
        assert got == sent, f"trial {trial}: {len(got)} of {len(sent)} messages"
        assert run("msgq", "recv", sysv_key, "--nowait").code == 5  # and nothing more


# --- streams: a start, an identity, an end ------------------------------------------


def start_sender(
    target: str, data: bytes, *extra: str, more_to_come: bool = False
) -> subprocess.Popen:
    """`send --stream` fed from a thread (it blocks once the queue is full). With
    more_to_come, its stdin stays open after `data`: the stream cannot end."""
    proc = subprocess.Popen(
        command("msgq", "send", target, "--stream", *extra),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            proc.stdin.write(data)
            if not more_to_come:
                proc.stdin.close()

    threading.Thread(target=feed, daemon=True).start()
    return proc


def start_receiver(target: str, out_path, *extra: str) -> subprocess.Popen:
    with open(out_path, "wb") as out:
        return subprocess.Popen(
            command("msgq", "recv", target, "--stream", *extra), stdout=out, stderr=subprocess.PIPE
        )


def wait_for_size(path, size: int, proc: subprocess.Popen) -> None:
    """Until `path` has at least `size` bytes (while proc still runs)."""
    deadline = time.monotonic() + 30
    while os.path.getsize(path) < size:
        assert proc.poll() is None, f"exited {proc.returncode}: {proc.stderr.read()!r}"
        assert time.monotonic() < deadline, f"{os.path.getsize(path)} of {size} bytes"
        time.sleep(0.005)


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_stream_after_an_interrupted_one_gets_only_its_own_bytes(
    sysv_key: str, posix_name: str, tmp_path, sysv_calls: str
) -> None:
    """A sender interrupted before any receiver came leaves its start and first
    pieces in the queue; the next stream's receiver skips them with a warning."""
    for target in (sysv_key, posix_name):
        interrupted = start_sender(target, os.urandom(1 << 20))
        wait_until_blocked(interrupted.pid)  # the queue is full
        interrupted.send_signal(signal.SIGINT)
        assert interrupted.wait(timeout=10) == 130
        data = os.urandom(300_000)
        receiver = start_receiver(target, tmp_path / "out", "--timeout", "30")
        sender = start_sender(target, data)
        assert sender.wait(timeout=30) == 0, sender.stderr.read()
        assert receiver.wait(timeout=30) == 0, receiver.stderr.read()
        got = (tmp_path / "out").read_bytes()
        assert (len(got), sha(got)) == (len(data), sha(data))
        warning = receiver.stderr.read().decode()
        assert warning.count("\n") == 1 and "skipped" in warning, warning


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_receiver_of_a_stream_whose_sender_stops_fails(
    sysv_key: str, posix_name: str, tmp_path, stop: int, sysv_calls: str
) -> None:
    """The sender stops after 1 MB: its receiver says so (exit 1) instead of waiting
    forever, and the next stream arrives whole."""
    for target in (sysv_key, posix_name):
        run("msgq", "send", target, "--data", "")  # make the queue for the receiver
        run("msgq", "recv", target)
        out = tmp_path / "broken"
        receiver = start_receiver(target, out, "--timeout", "60")
        wait_until_blocked(receiver.pid)
        sender = start_sender(target, os.urandom(3 << 19), more_to_come=True)
        wait_for_size(out, 1 << 20, receiver)
        wait_until_blocked(sender.pid, READ_CALLS)  # all sent, and the stream goes on
        sender.send_signal(stop)
        sender.wait(timeout=10)
        sender.stdin.close()
        assert receiver.wait(timeout=30) == 1
        line = receiver.stderr.read().decode()
        assert line.count("\n") == 1 and f"pid {sender.pid}" in line, line
        data = os.urandom(200_000)
        assert stream_through(target, data, tmp_path) == data


@pytest.mark.parametrize("trial", range(2))
def test_two_streams_at_once_each_arrive_whole(
    sysv_key: str, posix_name: str, tmp_path, trial: int
) -> None:
    """Two senders and two receivers on one queue at once: SysV keeps the streams
    apart by type, POSIX makes the second sender wait for the first."""
    for target in (sysv_key, posix_name):
        run("msgq", "send", target, "--data", "")
        run("msgq", "recv", target)
        outs = [tmp_path / f"{trial}-{n}" for n in range(2)]
        receivers = []
        for out in outs:  # the second POSIX receiver waits for the first to be done
            receivers.append(start_receiver(target, out, "--timeout", "60"))
            if target == posix_name and len(receivers) == 2:
                wait_until_blocked(receivers[-1].pid, SLEEP_CALLS)
            else:
                wait_until_blocked(receivers[-1].pid)
        sent = [os.urandom(400_000), os.urandom(300_000)]
        senders = [start_sender(target, data) for data in sent]
        for proc in senders + receivers:
            assert proc.wait(timeout=60) == 0, proc.stderr.read()
            assert proc.stderr.read() == b""
        got = sorted((len(b), sha(b)) for b in (out.read_bytes() for out in outs))
        assert got == sorted((len(b), sha(b)) for b in sent)


def test_stream_data_that_looks_like_the_protocol(
    sysv_key: str, posix_name: str, sysv_calls: str
) -> None:
    from ipctool.stream_protocol import END, START, control

    for target in (sysv_key, posix_name):
        for data in (control(END, 0, 0), control(START, 1, 2) + control(END, 1, 57)):
            assert run("msgq", "send", target, "--stream", input=data).code == 0
            got = run("msgq", "recv", target, "--stream", "--nowait")
            assert (got.code, got.stdout, got.err) == (0, data, "")


@pytest.mark.parametrize("into", ["pipe", "file"])
def test_many_lines_arrive_exactly_once_in_order(
    sysv_key: str, posix_name: str, tmp_path, into: str, sysv_calls: str
) -> None:
    """Into a pipe recv takes a message at a time, into a file in batches: either
    way every message arrives once, in order (same count and sha256)."""
    sent = b"".join(b"%015d\n" % i for i in range(20_000))
    for target in (sysv_key, posix_name):
        run("msgq", "send", target, "--data", "")  # make the queue for the receiver
        run("msgq", "recv", target)
        out = tmp_path / f"{into}-{target.strip('/')}"
        recv = " ".join(command("msgq", "recv", target, "--lines", "--count", "20000"))
        shell = f"{recv} | cat > {out}" if into == "pipe" else f"{recv} > {out}"
        receiver = subprocess.Popen(["bash", "-c", shell], stderr=subprocess.PIPE)
        assert run("msgq", "send", target, "--lines", input=sent).code == 0
        assert receiver.wait(timeout=60) == 0, receiver.stderr.read()
        got = out.read_bytes()
        assert (got.count(b"\n"), sha(got)) == (20_000, sha(sent))
        assert run("msgq", "recv", target, "--nowait").code == 5  # nothing left over


# --- SysV streams in C's loops (and, to compare, through sysv_ipc alone) ----------------


def make_queue(target: str) -> None:
    run("msgq", "send", target, "--data", "")
    run("msgq", "recv", target)


def send_file(target: str, path) -> subprocess.Popen:
    with open(path, "rb") as source:
        return subprocess.Popen(
            command("msgq", "send", target, "--stream"), stdin=source, stderr=subprocess.PIPE
        )


@pytest.mark.slow
@pytest.mark.parametrize("first", ["receiver", "sender"])
def test_64_mib_arrive_byte_exact(sysv_key: str, tmp_path, first: str, sysv_calls: str) -> None:
    source, copy = tmp_path / "in", tmp_path / "out"
    source.write_bytes(os.urandom(64 << 20))
    make_queue(sysv_key)
    if first == "receiver":
        receiver = start_receiver(sysv_key, copy, "--timeout", "60")
        wait_until_blocked(receiver.pid)
        sender = send_file(sysv_key, source)
    else:
        sender = send_file(sysv_key, source)
        wait_until_blocked(sender.pid)  # the queue is full
        receiver = start_receiver(sysv_key, copy, "--timeout", "60")
    assert sender.wait(timeout=60) == 0, sender.stderr.read()
    assert receiver.wait(timeout=60) == 0, receiver.stderr.read()
    got, sent = copy.read_bytes(), source.read_bytes()
    assert (len(got), sha(got)) == (len(sent), sha(sent))


def pipe_is_read(writer) -> None:
    """Until the reader has taken everything written to the pipe (FIONREAD)."""
    import array
    import fcntl
    import termios

    count = array.array("i", [1])
    deadline = time.monotonic() + 10
    while count[0]:
        fcntl.ioctl(writer.fileno(), termios.FIONREAD, count)
        assert time.monotonic() < deadline, "the sender never read its stdin"
        time.sleep(0.002)  # polling a condition


def test_a_piece_like_a_control_message_inside_a_stream(
    sysv_key: str, tmp_path, sysv_calls: str
) -> None:
    """Each part below reaches the sender in a read of its own: the 65-byte ones
    would be pieces that look like an END, if the sender did not escape them."""
    from ipctool.stream_protocol import END, control

    lookalike = control(END, 0, 0)
    parts = [os.urandom(10_000), lookalike, os.urandom(3000), lookalike]
    make_queue(sysv_key)
    out = tmp_path / "out"
    receiver = start_receiver(sysv_key, out, "--timeout", "60")
    wait_until_blocked(receiver.pid)
    sender = subprocess.Popen(
        command("msgq", "send", sysv_key, "--stream"),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    for part in parts:
        sender.stdin.write(part)
        pipe_is_read(sender.stdin)
    sender.stdin.close()
    assert sender.wait(timeout=30) == 0, sender.stderr.read()
    assert receiver.wait(timeout=30) == 0, receiver.stderr.read()
    assert out.read_bytes() == b"".join(parts)


# A stream sender waits in msgsnd (a full queue) or read (stdin).
SENDER_CALLS = {m: BLOCKING_CALLS[m] | READ_CALLS[m] for m in BLOCKING_CALLS}


def assert_prefix(got: bytes, sent: bytes) -> None:
    assert sha(got) == sha(sent[: len(got)]), f"the {len(got)} bytes written are not what was sent"


@pytest.mark.parametrize("side", ["receiver", "sender"])
def test_ctrl_c_mid_stream_at_many_moments(
    sysv_key: str, tmp_path, side: str, sysv_calls: str
) -> None:
    """Ctrl-C to one end while the stream flows (or waits), after each of several
    amounts has arrived: exit 130, nothing on stderr, and what the receiver wrote
    is exactly the start of what was sent (a piece it took is written whole)."""
    import random

    data = os.urandom(24 << 20)
    moments = [0, 1, 8192, *random.Random(side).sample(range(1 << 16, 20 << 20), 5)]
    make_queue(sysv_key)
    for at in moments:
        out = tmp_path / f"out-{at}"
        receiver = start_receiver(sysv_key, out, "--timeout", "60")
        wait_until_blocked(receiver.pid)
        sender = start_sender(sysv_key, data, more_to_come=True)  # the stream cannot end
        wait_until_blocked(sender.pid, SENDER_CALLS)  # started: Ctrl-C is ours now
        wait_for_size(out, at, receiver)
        stopped, other = (receiver, sender) if side == "receiver" else (sender, receiver)
        stopped.send_signal(signal.SIGINT)
        assert stopped.wait(timeout=10) == 130, f"at {at}: {stopped.stderr.read()!r}"
        assert stopped.stderr.read() == b"", f"at {at}"
        if side == "receiver":  # the sender waits for room that will not come
            other.send_signal(signal.SIGINT)
            assert other.wait(timeout=10) == 130
        else:
            assert other.wait(timeout=10) == 1  # "stopped the stream after N bytes"
            assert b"stopped the stream" in other.stderr.read()
        sender.stdin.close()
        assert_prefix(out.read_bytes(), data)


@pytest.mark.parametrize("when", ["writing", "waiting"])
def test_a_stream_into_a_reader_that_leaves_ends_quietly(
    sysv_key: str, when: str, sysv_calls: str
) -> None:
    """`recv --stream | head -c 1`: the reader leaves while recv writes (EPIPE), or
    while it waits for the next piece (seen at the heartbeat): 141, quietly."""
    make_queue(sysv_key)
    receiver = subprocess.Popen(
        command("msgq", "recv", sysv_key, "--stream"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_until_blocked(receiver.pid)
    size = 8 << 20 if when == "writing" else 100
    sender = start_sender(sysv_key, os.urandom(size), more_to_come=True)
    assert len(receiver.stdout.read(1)) == 1
    if when == "waiting":
        wait_until_blocked(receiver.pid)  # all 100 bytes written: it waits for more
    receiver.stdout.close()
    assert receiver.wait(timeout=10) == 141
    assert receiver.stderr.read() == b""
    sender.send_signal(signal.SIGINT)
    assert sender.wait(timeout=10) in (0, 130)  # 0: all of it fitted in the queue
    sender.stdin.close()


def test_a_stream_into_a_full_disk_is_an_error(sysv_key: str, sysv_calls: str) -> None:
    make_queue(sysv_key)
    with open("/dev/full", "wb") as full:
        receiver = subprocess.Popen(
            command("msgq", "recv", sysv_key, "--stream"), stdout=full, stderr=subprocess.PIPE
        )
    wait_until_blocked(receiver.pid)
    assert run("msgq", "send", sysv_key, "--stream", input=os.urandom(10_000)).code == 0
    result = Result(receiver.wait(timeout=10), b"", receiver.stderr.read())
    assert_one_line_error(result, "msgq", 1)
    assert "stdout: no space left on device" in result.err
