"""Test kit for plugin authors: run ipctool for real, and check the shared contract.

    from ipctool.testing import check_contract, contract_cases, run

    @pytest.mark.parametrize("case", contract_cases(), ids=str)
    def test_contract(case):
        check_contract(case)

Every check runs ipctool as a subprocess, as a user's shell would, and every
object a check creates is removed through `case.remove` even when it fails.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ipctool.contract import PAYLOAD, VERBS, ContractCase
from ipctool.registry import Registry, build_registry
from ipctool.testkit import (
    free_port,
    run_key_prefix,
    run_name_prefix,
    unique_key,
    unique_name,
    unique_path,
)

__all__ = [
    "PAYLOAD",
    "ContractCase",
    "Result",
    "Started",
    "assert_one_line_error",
    "check_contract",
    "check_record",
    "command",
    "contract_cases",
    "free_port",
    "ipc_cases",
    "leftovers",
    "mechanisms_without_cases",
    "posix_names_left",
    "posix_unlinker",
    "run",
    "run_name_prefix",
    "start_receiver",
    "sysv_keys_left",
    "unique_key",
    "unique_name",
    "unique_path",
    "wait_until_blocked",
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
    cases: list[ContractCase] = [
        broken_case("plugins", RuntimeError(failure)) for failure in registry.failures
    ]
    for impl in registry.manager.hook.ipctool_contract_cases.get_hookimpls():
        try:
            cases.extend(_checked_cases(impl.function()))
        except Exception as exc:
            cases.append(broken_case(impl.plugin_name, exc))
    return cases


def _checked_cases(answer: object) -> list[ContractCase]:
    """A plugin's ipctool_contract_cases() answer, if it is a list of ContractCase."""
    if not isinstance(answer, Iterable):
        raise TypeError(f"not a list of ContractCase: {answer!r}")
    cases = []
    for case in answer:
        if not isinstance(case, ContractCase):
            raise TypeError(f"not a ContractCase: {case!r}")
        cases.append(case)
    return cases


def broken_case(plugin: str, error: Exception) -> ContractCase:
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


# System calls a waiting ipctool sleeps in, by machine: read, poll, select, pause,
# accept, recvfrom, msgsnd, msgrcv, mq_timedsend/receive, pselect6, ppoll, epoll
# waits, accept4, rt_sigtimedwait, rt_sigsuspend, openat (a FIFO's blocking open),
# semop and semtimedop (a SysV semaphore), futex (a POSIX semaphore's sem_wait,
# a wait on a word in shared memory: shm's ring), readv.
BLOCKING_CALLS = {
    "x86_64": {0, 7, 19, 23, 34, 43, 45, 65, 69, 70, 128, 130, 202, 220, 232, 242, 243, 257}
    | {270, 271, 281, 288},
    "aarch64": {22, 56, 63, 65, 72, 73, 98, 133, 137, 182, 183, 188, 189, 192, 193, 202, 207}
    | {242},
}


def until(
    condition: Callable[[], object],
    proc: subprocess.Popen[Any] | None = None,
    what: str = "",
    timeout: float = 10,
) -> None:
    """Poll a condition every 2 ms (a condition, never a fixed wait) for up to
    `timeout` seconds; fails at once if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"exited {proc.returncode} before {what}"
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.002)


def wait_until_blocked(pid: int, timeout: float = 10) -> None:
    """Return once the process sleeps in a waiting system call (not still starting
    up): the condition a test of "in use", Ctrl-C or a timeout starts from."""
    calls = BLOCKING_CALLS.get(os.uname().machine)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rpartition(")")[2].split()[0]
            with open(f"/proc/{pid}/syscall") as f:
                call = f.read().split()[0]
        except (OSError, IndexError):
            raise AssertionError(f"process {pid} ended before it blocked") from None
        if state == "S" and call.isdigit() and (calls is None or int(call) in calls):
            return
        time.sleep(0.002)  # polling a condition, not waiting out a time
    raise AssertionError(f"process {pid} never blocked in a waiting system call")


def check_in_use_refused(case: ContractCase, target: str) -> None:
    """A receiver waiting on the object makes it in use: clean refuses it (exit 6)."""
    mech = case.mechanism
    receiver = start_receiver(
        mech, "recv", target, *case.recv_args, "--timeout", "60", stderr=subprocess.PIPE
    ).process
    try:
        wait_until_blocked(receiver.pid)
        refused = run(mech, "clean", target)
        assert_one_line_error(refused, mech, 6)
        assert str(receiver.pid) in refused.err, refused.err
        assert run(mech, "inspect", target, "--json").code == 0, "clean removed an object in use"
        record = run(mech, "inspect", target, "--json").json()
        assert receiver.pid in record["users"], record
    finally:
        receiver.kill()
        receiver.wait()


def round_trip(case: ContractCase, target: str, payload: bytes) -> bytes:
    """send then recv (or recv first, for listeners); returns what recv printed."""
    recv_args = [case.mechanism, "recv", target, *case.recv_args]
    recv_args += ["--timeout", "10"] if case.waits else []

    def send(receiver_pid: int = 0, to: str = target) -> Result:
        send_target = case.send_target(to, receiver_pid) if case.send_target else to
        return run(case.mechanism, "send", send_target, *case.send_args, input=payload)

    if not case.recv_first:
        sent = send()
        assert sent.code == 0, sent.err
        got = run(*recv_args)
        assert got.code == 0, got.err
        return got.stdout
    started = start_receiver(*recv_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    receiver = started.process
    # The receiver's output is read while send runs: a send that ends only once
    # its peer has closed (a connection's, waiting for a reply) would otherwise
    # wait for a receiver stalled on a full stdout pipe.
    outputs: list[tuple[bytes, bytes]] = []
    reader = threading.Thread(target=lambda: outputs.append(receiver.communicate(timeout=60)))
    reader.start()
    try:
        sent = send(receiver.pid, started.target)  # as announced: a listener's real port
        assert sent.code == 0, sent.err
        reader.join(60)
        assert outputs, "the receiver did not end"
        out, err = outputs[0]
        assert receiver.returncode == 0, err
        return out
    finally:
        receiver.kill()
        reader.join(60)
        receiver.wait()


def find_record(records: Sequence[dict[str, Any]], target: str) -> dict[str, Any] | None:
    return next((r for r in records if r.get("target") == target), None)


SCHEMA: dict[str, tuple[type, ...]] = {  # README "Object records": the keys every record has
    "mechanism": (str,),
    "kind": (str,),
    "target": (str,),
    "id": (int, str, type(None)),
    "owner": (str, type(None)),
    "uid": (int, type(None)),
    "mode": (str, type(None)),
    "size": (int, type(None)),
    "capacity": (int, type(None)),
    "users": (list,),
    "created": (str, type(None)),
    "last_used": (str, type(None)),
    "idle_seconds": (int, type(None)),
    "stale": (bool, type(None)),
    "stale_reason": (str, type(None)),
    "removable": (bool,),
}


def check_record(record: dict[str, Any], mechanism: str) -> None:
    """One inspect --json record follows the schema every mechanism shares."""
    for key, types in SCHEMA.items():
        assert key in record, f"{mechanism}: record has no {key!r}: {record}"
        value = record[key]
        assert isinstance(value, types), f"{mechanism}: {key}={value!r} is not {types}"
    assert record["mechanism"] == mechanism, record
    assert all(isinstance(pid, int) for pid in record["users"]), record["users"]
    if record["mode"] is not None:
        assert len(record["mode"]) == 4 and int(record["mode"], 8) >= 0, record["mode"]


def check_lasting(case: ContractCase, target: str) -> None:
    """inspect sees the object (in the schema), a fresh one is never stale, clean removes it."""
    mech = case.mechanism
    if case.waits:
        check_in_use_refused(case, target)
    if not case.recv_first:  # the round trip consumed it: leave one message in
        assert run(mech, "send", target, *case.send_args, input=b"x").code == 0
    one = run(mech, "inspect", target, "--json")
    assert one.code == 0, one.err
    check_record(one.json(), mech)
    canonical = one.json()["target"]
    listed = run(mech, "inspect", "--json")
    assert listed.code == 0, listed.err
    for record in listed.json():
        check_record(record, mech)
    assert find_record(listed.json(), canonical), f"{canonical} not in inspect --json"
    stale = run(mech, "clean", "--stale", "--dry-run", "--json")
    assert stale.code == 0, stale.err
    assert not find_record(stale.json(), canonical), "a fresh object counted as stale"
    assert run(mech, "clean", target, "--dry-run").code == 0
    assert run(mech, "inspect", target, "--json").code == 0, "--dry-run removed it"
    cleaned = run(mech, "clean", target)
    assert cleaned.code == 0, cleaned.err
    assert run(mech, "inspect", target, "--json").code == 3


def check_counts(case: ContractCase, target: str, expected: bytes) -> None:
    """A counting mechanism: `send --count 3` is three units, each `recv` takes one."""
    mech = case.mechanism
    sent = run(mech, "send", target, *case.send_args, "--count", "3", input=case.payload)
    assert sent.code == 0, sent.err
    for unit in range(3):
        got = run(mech, "recv", target, *case.recv_args, "--nowait")
        assert got.code == 0, f"unit {unit + 1} of 3: {got.err}"
        assert got.stdout == expected, got.stdout
    assert_one_line_error(run(mech, "recv", target, *case.recv_args, "--nowait"), mech, 5)


def check_contract(case: ContractCase) -> None:
    """Round trip, inspect sees the object, clean removes it, a bad target is a usage error."""
    mech = case.mechanism
    target = case.new_target()  # outside the try: nothing to remove if this fails
    try:
        expected = case.payload if case.expected is None else case.expected
        assert round_trip(case, target, case.payload) == expected
        if case.stream:  # a byte stream: 1 MiB of random bytes, exactly
            import hashlib

            data = os.urandom(1 << 20)
            got = round_trip(case, target, data)
            assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
        if case.counts:  # counts, not bytes: N units sent are N units received
            check_counts(case, target, expected)
        if case.lasting:  # an object that outlives its peers: inspect and clean it
            check_lasting(case, target)
        bad = run(mech, "send", case.bad_target, input=b"x")
        assert_one_line_error(bad, mech, 2)
        for verb in VERBS:
            assert run(mech, verb, "--help").code == 0, f"{mech} {verb} --help"
    finally:
        case.remove(target)


def leftovers(cases: Sequence[ContractCase] | None = None) -> list[tuple[ContractCase, str]]:
    """What this test run left behind, by every plugin's own account; each removed."""
    found, seen = [], set()
    for case in contract_cases() if cases is None else cases:
        if case.leftovers is None or (case.mechanism, case.leftovers) in seen:
            continue
        seen.add((case.mechanism, case.leftovers))
        for target in case.leftovers():
            case.remove(target)
            found.append((case, target))
    return found


# --- contract cases of a mechanism with SysV keys and POSIX names -----------------

Leftovers = Callable[[], list[str]]


def ipc_cases(
    mechanism: str,
    *,
    remove_sysv: Callable[[str], None],
    remove_posix: Callable[[str], None],
    sysv_table: str,
    posix_leftovers: Leftovers,
    variants: Sequence[tuple[str, dict[str, Any]]] = (),
    **common: Any,
) -> list[ContractCase]:
    """The contract cases of a mechanism whose objects are SysV (by key) and POSIX
    (by /name), as msgq, sem and shm: "sysv" on the kit's unique keys, refusing
    "notakey", and "posix" on its unique names, refusing "/two/slashes"; then one
    case per variant (label, keywords), of the kind its label starts with
    ("sysv-recv-first"). `common` goes to every case, a variant's keywords over it.

    The leak check finds this run's keys in `sysv_table` (/proc/sysvipc/msg);
    `posix_leftovers()` lists this run's names (see posix_names_left)."""
    # One callable for every SysV case: the leak check asks each distinct one once.
    sysv_leftovers = functools.partial(sysv_keys_left, sysv_table)
    kinds: dict[str, dict[str, Any]] = {
        "sysv": {
            "new_target": lambda: hex(unique_key()),
            "remove": remove_sysv,
            "bad_target": "notakey",
            "leftovers": sysv_leftovers,
        },
        "posix": {
            "new_target": unique_name,
            "remove": remove_posix,
            "bad_target": "/two/slashes",
            "leftovers": posix_leftovers,
        },
    }
    labelled = [("sysv", {}), ("posix", {}), *variants]
    return [
        ContractCase(mechanism, label, **{**kinds[label.split("-")[0]], **common, **keywords})
        for label, keywords in labelled
    ]


def sysv_keys_left(table: str) -> list[str]:
    """The keys (0x-hex) of this run's objects in a /proc/sysvipc table."""
    with open(table) as f:
        next(f)
        keys = [int(line.split()[0]) & 0xFFFFFFFF for line in f]
    return [hex(k) for k in keys if k >> 16 == run_key_prefix()]


def posix_names_left(directory: str | None, prefix: str = "") -> list[str]:
    """The /names of this run's POSIX objects in the directory that shows them as
    files named PREFIX + name (/dev/shm with "sem." for semaphores); none if the
    directory is unknown (None) or unreadable."""
    start = prefix + run_name_prefix().lstrip("/")
    try:
        names = os.listdir(directory) if directory else []
    except OSError:
        return []
    return ["/" + n[len(prefix) :] for n in names if n.startswith(start)]


def posix_unlinker(function: str) -> Callable[[str], None]:
    """remove() for POSIX objects: posix_ipc's `function` (unlink_semaphore, ...)
    on the name, nothing if it is gone already."""

    def remove(name: str) -> None:
        import posix_ipc

        with contextlib.suppress(posix_ipc.ExistentialError):
            getattr(posix_ipc, function)(name)

    return remove
