"""Readiness: a receiver says when it may be sent to, through --ready-fd N or
IPCTOOL_READY_FD, and the test kit waits for that line instead of sleeping."""

from __future__ import annotations

import os
import subprocess

import sysv_ipc

from ipctool.testing import (
    assert_one_line_error,
    command,
    run,
    start_receiver,
)


def test_start_receiver_returns_once_the_queue_is_open(sysv_key: str, posix_name: str) -> None:
    for target, canonical in ((sysv_key, f"0x{int(sysv_key, 16):08x}"), (posix_name, posix_name)):
        started = start_receiver(
            "msgq", "recv", target, "--create", "--timeout", "10", stdout=subprocess.PIPE
        )
        assert started.target == canonical
        # Truthful: the queue exists now, and what is sent from now on arrives.
        assert run("msgq", "inspect", target, "--json").code == 0
        assert run("msgq", "send", target, "--data", "after ready").code == 0
        out, _ = started.process.communicate(timeout=10)
        assert (started.process.returncode, out) == (0, b"after ready")


def test_ready_fd_option(sysv_key: str) -> None:
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        command(
            "msgq", "recv", sysv_key, "--create", "--timeout", "10", "--ready-fd", str(write_end)
        ),
        pass_fds=(write_end,),
        stdout=subprocess.PIPE,
    )
    os.close(write_end)
    with os.fdopen(read_end, "rb") as ready:
        assert ready.read() == f"0x{int(sysv_key, 16):08x}\n".encode()  # one line, then EOF
    run("msgq", "send", sysv_key, "--data", "x")
    assert proc.communicate(timeout=10)[0] == b"x"


def test_ready_by_id_names_the_id() -> None:
    queue = sysv_ipc.MessageQueue(sysv_ipc.IPC_PRIVATE, sysv_ipc.IPC_CREX, 0o600)
    try:
        queue.send(b"waiting already")
        started = start_receiver("msgq", "recv", "--id", str(queue.id), stdout=subprocess.PIPE)
        assert started.target == f"--id={queue.id}"
        assert started.process.communicate(timeout=10)[0] == b"waiting already"
    finally:
        queue.remove()


def test_shell_script_waits_for_the_line(sysv_key: str, tmp_path) -> None:
    """The README's way: a FIFO as the ready fd, and `read` instead of `sleep`."""
    ipctool = " ".join(command())
    script = f"""
      mkfifo ready
      {ipctool} msgq recv {sysv_key} --create --timeout 10 --ready-fd 3 3>ready > got &
      read target < ready
      {ipctool} msgq send "$target" --data hello
      wait $!
      cat got
    """
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, timeout=30)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"hello", b"")


def test_no_ready_fd_no_line(sysv_key: str) -> None:
    run("msgq", "send", sysv_key, "--data", "x")
    env = {k: v for k, v in os.environ.items() if k != "IPCTOOL_READY_FD"}
    got = run("msgq", "recv", sysv_key, env=env)
    assert (got.code, got.stdout, got.stderr) == (0, b"x", b"")


def test_bad_ready_fd_is_a_usage_error(sysv_key: str) -> None:
    bad = run("msgq", "recv", sysv_key, "--create", "--ready-fd", "987")
    assert_one_line_error(bad, "msgq", 2)
    assert "not an open file descriptor" in bad.err
    env = {**os.environ, "IPCTOOL_READY_FD": "nine"}
    worse = run("msgq", "recv", sysv_key, "--create", "--timeout", "1", env=env)
    assert_one_line_error(worse, "msgq", 2)
    assert "IPCTOOL_READY_FD" in worse.err
