"""ipctool's pytest plugin (entry point `pytest11`): the test kit for any plugin's suite.

A third-party plugin's tests get, with no conftest of their own:

- `ipctool_contract_case`: parametrised over the contract cases of the
  installed plugins (ini `ipctool_mechanisms = shm sem` narrows it), so one
  line runs the whole shared contract:

      from ipctool.testing import check_contract

      def test_contract(ipctool_contract_case):
          check_contract(ipctool_contract_case)

- fixtures for unique targets, removed afterwards where the kit knows how:
  `ipctool_key` (SysV key, as 0x-hex), `ipctool_name` (POSIX /name),
  `ipctool_path` (a path in this run's directory), `ipctool_port` (a free
  loopback TCP port);
- a leak check at the end of the session (ini `ipctool_leak_check = true`,
  or any use of the fixtures above): every plugin's `leftovers()` is asked
  what this run left behind; anything found is removed and fails the run.

Nothing heavy is imported until a fixture or the leak check needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

_used = False  # a kit fixture ran: check for leaks at the end


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "ipctool_mechanisms",
        "mechanisms whose contract cases ipctool_contract_case runs (default: all installed)",
        type="args",
        default=[],
    )
    parser.addini(
        "ipctool_leak_check",
        "fail the run if a plugin's leftovers() finds objects this run left behind",
        type="bool",
        default=False,
    )


def pytest_configure(config: pytest.Config) -> None:
    from ipctool.testkit import KitError, run_tag

    if hasattr(config, "workerinput") or not wants_kit(config):
        return
    try:
        run_tag()  # one tag for the whole run, claimed before xdist starts its workers
    except KitError as err:
        raise pytest.UsageError(str(err)) from None
    config.stash[CLAIMED] = True


def wants_kit(config: pytest.Config) -> bool:
    """A run that uses the kit: leak-checked, or started where a tag is set. Other
    projects' runs in the same environment are left as they are."""
    import os

    return bool(config.getini("ipctool_leak_check")) or "IPCTOOL_TEST_TAG" in os.environ


CLAIMED = pytest.StashKey[bool]()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ipctool_contract_case" not in metafunc.fixturenames:
        return
    from ipctool.testing import contract_cases

    wanted = set(metafunc.config.getini("ipctool_mechanisms"))
    cases = [c for c in contract_cases() if not wanted or c.mechanism in wanted]
    missing = wanted - {c.mechanism for c in cases}
    # A mechanism named but not found is a failure, never an empty (skipped) test.
    cases += [missing_case(name) for name in sorted(missing)]
    metafunc.parametrize("ipctool_contract_case", cases, ids=str)


def missing_case(mechanism: str) -> Any:
    from ipctool.registry import get_registry
    from ipctool.testing import broken_case

    why = [w for w in get_registry().warnings if mechanism in w] or ["no installed plugin has it"]
    return broken_case(mechanism, LookupError(f"no contract cases: {'; '.join(why)}"))


def _mark_used() -> None:
    global _used
    _used = True


@pytest.fixture
def ipctool_key() -> Iterator[str]:
    """A SysV key (0x-hex) no other test uses. What a test leaves on it is not
    removed here: the session's leak check reports it (and then removes it)."""
    from ipctool.testkit import unique_key

    _mark_used()
    yield hex(unique_key())


@pytest.fixture
def ipctool_name() -> Iterator[str]:
    from ipctool.testkit import unique_name

    _mark_used()
    yield unique_name()


@pytest.fixture
def ipctool_path() -> Iterator[str]:
    import contextlib
    import os

    from ipctool.testkit import unique_path

    _mark_used()
    path = unique_path()
    yield path
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        os.unlink(path)


@pytest.fixture
def ipctool_port() -> int:
    from ipctool.testkit import free_port

    return free_port()


def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist: a worker that used a kit fixture says so in its output."""
    if getattr(node, "workeroutput", {}).get("ipctool_used"):
        _mark_used()


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    """Fail the run if any plugin finds objects this run left behind (then remove them)."""
    config = session.config
    if hasattr(config, "workerinput"):
        config.workeroutput["ipctool_used"] = _used  # type: ignore[attr-defined]
        return  # with xdist, the controller checks once all workers are done
    if _used or config.getini("ipctool_leak_check"):
        check_leaks(session)
    if config.stash.get(CLAIMED, False):
        from ipctool.testkit import release_tag

        release_tag()


def check_leaks(session: pytest.Session) -> None:
    from ipctool.testing import contract_cases, leftovers

    wanted = set(session.config.getini("ipctool_mechanisms"))
    cases = [c for c in contract_cases() if not wanted or c.mechanism in wanted]
    found = leftovers(cases)
    blind = sorted({str(c) for c in cases if c.leftovers is None})
    if blind:
        print(f"\nipctool: leak check cannot see what these cases leave: {blind} (no leftovers())")
    if found:
        names = [f"{case.mechanism}:{target}" for case, target in found]
        print(f"\nleaked IPC objects (now removed): {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
