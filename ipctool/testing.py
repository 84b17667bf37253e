"""Test kit for plugin authors: run ipctool for real, and check the shared contract.

    from ipctool.testing import check_contract, contract_cases, run

    @pytest.mark.parametrize("case", contract_cases(), ids=str)
    def test_contract(case):
        check_contract(case)

Every check runs ipctool as a subprocess, as a user's shell would, and every
object a check creates is removed through `case.remove` even when it fails.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ipctool.contract import PAYLOAD, VERBS, ContractCase
from ipctool.registry import Registry, build_registry

__all__ = [
    "PAYLOAD",
    "ContractCase",
    "Result",
    "Started",
    "assert_one_line_error",
    "check_contract",
    "command",
    "contract_cases",
    "mechanisms_without_cases",
    "run",
    "start_receiver",
]


@dataclass
class Result:
    code: int
    stdout: bytes
    stderr: bytes

    @property
    def err(self) -> str:
        return self.stderr.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.stdout)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ipctool", *args]


def run(
    *args: str, input: bytes = b"", timeout: float = 30, env: dict[str, str] | None = None
) -> Result:
    """Run `ipctool ARGS` with stdin `input`; return exit code and both outputs."""
    done = subprocess.run(
        command(*args), input=input, capture_output=True, timeout=timeout, env=env, check=False
    )
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass
class Started:
    """A running ipctool that said it is ready, and the target it announced."""

    process: subprocess.Popen
    target: str


def start_receiver(
    *args: str, timeout: float = 10, env: dict[str, str] | None = None, **popen: Any
) -> Started:
    """Start `ipctool ARGS` with a pipe as its ready fd (IPCTOOL_READY_FD); return
    once it wrote its ready line, so that no test has to sleep for a receiver.

    Extra keywords go to subprocess.Popen (stdout=subprocess.PIPE, ...). Fails,
    with the process's exit code and stderr, if it ends or closes the fd first.
    """
    read_end, write_end = os.pipe()
    environment = {**(os.environ if env is None else env), "IPCTOOL_READY_FD": str(write_end)}
    try:
        process = subprocess.Popen(command(*args), env=environment, pass_fds=(write_end,), **popen)
    finally:
        os.close(write_end)  # only the receiver holds it now: its exit means EOF here
    try:
        line = _read_line(read_end, timeout)
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        os.close(read_end)
    if not line.endswith(b"\n"):
        process.kill()
        _, err = process.communicate()
        raise AssertionError(
            f"ipctool {' '.join(args)} was never ready (exit {process.returncode}): "
            f"{(err or b'').decode(errors='replace')}"
        )
    return Started(process, line[:-1].decode(errors="surrogateescape"))


def _read_line(fd: int, timeout: float) -> bytes:
    """Bytes up to a newline or EOF, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no ready line within {timeout:g} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        line += chunk
    return line


def contract_cases(registry: Registry | None = None) -> list[ContractCase]:
    """The contract cases of every registered plugin.

    A plugin whose hook fails gets one case that fails with that error, so the
    other plugins' cases still run.
    """
    registry = registry or build_registry()
    cases = []
    for impl in registry.manager.hook.ipctool_contract_cases.get_hookimpls():
        try:
            cases.extend(impl.function())
        except Exception as exc:
            cases.append(_broken_case(impl.plugin_name, exc))
    return cases


def _broken_case(plugin: str, error: Exception) -> ContractCase:
    def fail() -> str:
        raise AssertionError(f"plugin {plugin}: ipctool_contract_cases failed: {error!r}")

    return ContractCase(plugin, "broken", fail, lambda target: None, "")


def mechanisms_without_cases(registry: Registry | None = None) -> list[str]:
    registry = registry or build_registry()
    covered = {case.mechanism for case in contract_cases(registry)}
    return sorted(set(registry.mechanisms) - covered)


def assert_one_line_error(result: Result, mechanism: str, code: int) -> None:
    assert result.code == code, f"exit {result.code}, wanted {code}: {result.err}"
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, f"wanted one error line, got: {result.err!r}"
    assert lines[0].startswith(f"ipctool: {mechanism}"), lines[0]
    assert "Traceback" not in result.err


def round_trip(case: ContractCase, target: str) -> bytes:
    """send then recv (or recv first, for listeners); returns what recv printed."""
    recv_args = [case.mechanism, "recv", target, *case.recv_args, "--timeout", "10"]

    def send(receiver_pid: int = 0, to: str = target) -> Result:
        send_target = case.send_target(to, receiver_pid) if case.send_target else to
        return run(case.mechanism, "send", send_target, *case.send_args, input=case.payload)

    if not case.recv_first:
        sent = send()
        assert sent.code == 0, sent.err
        got = run(*recv_args)
        assert got.code == 0, got.err
        return got.stdout
    started = start_receiver(*recv_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    receiver = started.process
    try:
        sent = send(receiver.pid, started.target)  # as announced: a listener's real port
        assert sent.code == 0, sent.err
        out, err = receiver.communicate(timeout=10)
        assert receiver.returncode == 0, err
        return out
    finally:
        receiver.kill()
        receiver.wait()


def find_record(records: Sequence[dict[str, Any]], target: str) -> dict[str, Any] | None:
    return next((r for r in records if r.get("target") == target), None)


def check_contract(case: ContractCase) -> None:
    """Round trip, inspect sees the object, clean removes it, a bad target is a usage error."""
    mech = case.mechanism
    target = case.new_target()  # outside the try: nothing to remove if this fails
    try:
        expected = case.payload if case.expected is None else case.expected
        assert round_trip(case, target) == expected
        if case.lasting:  # an object that outlives its peers: inspect and clean it
            assert run(mech, "send", target, *case.send_args, input=b"x").code == 0
            one = run(mech, "inspect", target, "--json")
            assert one.code == 0, one.err
            canonical = one.json()["target"]
            listed = run(mech, "inspect", "--json")
            assert listed.code == 0, listed.err
            assert find_record(listed.json(), canonical), f"{canonical} not in inspect --json"
            assert run(mech, "clean", target, "--dry-run").code == 0
            assert run(mech, "inspect", target, "--json").code == 0, "--dry-run removed it"
            cleaned = run(mech, "clean", target)
            assert cleaned.code == 0, cleaned.err
            assert run(mech, "inspect", target, "--json").code == 3
        bad = run(mech, "send", case.bad_target, input=b"x")
        assert_one_line_error(bad, mech, 2)
        for verb in VERBS:
            assert run(mech, verb, "--help").code == 0, f"{mech} {verb} --help"
    finally:
        case.remove(target)
