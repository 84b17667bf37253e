"""The core: discovery of third-party plugins, failures that must not break the tool,
env switches, lazy imports and packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from ipctool.testing import Result, assert_one_line_error, command, run

GOOD_PLUGIN = """
from ipctool.api import Mechanism, hookimpl

@hookimpl
def ipctool_mechanisms():
    return [Mechanism(name="{name}", summary="A test mechanism.",
                      commands="{module}_cmds:app", family="Other")]
"""

GOOD_COMMANDS = '''
from ipctool.api import new_app, NotFound

app = new_app(help="Test verbs.")

@app.command()
def send(target: str) -> None:
    """Send."""
    print("sent", target)

@app.command()
def recv(target: str) -> None:
    """Receive."""
    raise NotFound(target, "no such thing")

@app.command()
def inspect() -> None:
    """Inspect."""

@app.command()
def clean() -> None:
    """Clean."""
'''


def make_distribution(root: Path, dist: str, entry: str, module: str, source: str) -> None:
    """A plugin distribution as pip would leave it: a module and a .dist-info."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"  # as pip names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[ipctool]\n{entry} = {module}\n")


def good_plugin(root: Path, dist: str = "ipctool-fake", name: str = "fake") -> None:
    module = dist.replace("-", "_")
    make_distribution(root, dist, name, module, GOOD_PLUGIN.format(name=name, module=module))
    (root / f"{module}_cmds.py").write_text(GOOD_COMMANDS)


def ipctool(root: Path, *args: str, input: bytes = b"", **env: str) -> Result:
    environment = {**os.environ, "PYTHONPATH": str(root), **env}
    done = subprocess.run(
        command(*args), input=input, capture_output=True, env=environment, timeout=30
    )
    return Result(done.returncode, done.stdout, done.stderr)


def test_third_party_plugin_is_discovered(tmp_path: Path) -> None:
    good_plugin(tmp_path)
    assert b"fake" in ipctool(tmp_path, "--help").stdout
    assert ipctool(tmp_path, "fake", "send", "x").stdout == b"sent x\n"
    failed = ipctool(tmp_path, "fake", "recv", "thing")
    assert_one_line_error(failed, "fake", 3)
    assert failed.err.strip() == "ipctool: fake: thing: no such thing"
    listed = ipctool(tmp_path, "plugins", "--json").json()
    fake = next(p for p in listed if p["distribution"] == "ipctool-fake")
    assert fake["version"] == "1.0"
    assert fake["mechanisms"] == [
        {"name": "fake", "family": "Other", "verbs": ["clean", "inspect", "recv", "send"]}
    ]
    builtin = next(p for p in listed if p["plugin"] == "msgq")
    assert builtin["distribution"] == "ipctool"


def test_broken_plugins_only_warn(tmp_path: Path) -> None:
    make_distribution(tmp_path, "ipctool-broken", "broken", "broken_plug", "import nonexistent\n")
    bad_hook = "from ipctool.api import hookimpl\n@hookimpl\ndef ipctool_mechanisms(wrong): ...\n"
    make_distribution(tmp_path, "ipctool-badhook", "badhook", "badhook_plug", bad_hook)
    typo = "from ipctool.api import hookimpl\n@hookimpl\ndef ipctool_mechanism(): ...\n"
    make_distribution(tmp_path, "ipctool-typo", "typo", "typo_plug", typo)
    make_distribution(tmp_path, "ipctool-exits", "exits", "exits_plug", "raise SystemExit(3)\n")
    result = ipctool(tmp_path, "msgq", "inspect", "--limits", "--json")
    assert result.code == 0, result.err
    warnings = result.err.splitlines()
    assert len(warnings) == 4, warnings
    for dist in ("ipctool-broken", "ipctool-badhook", "ipctool-typo", "ipctool-exits"):
        assert any(dist in w and w.startswith("ipctool: warning:") for w in warnings), dist
    quiet = ipctool(  # names match as pip matches them: ipctool_exits is ipctool-exits
        tmp_path,
        "msgq",
        "inspect",
        "--limits",
        IPCTOOL_DISABLE_PLUGINS="broken,badhook,typo,ipctool_exits",
    )
    assert quiet.code == 0 and quiet.stderr == b""


def test_two_plugins_claiming_one_mechanism(tmp_path: Path) -> None:
    good_plugin(tmp_path, dist="ipctool-dupq", name="msgq")
    clash = ipctool(tmp_path, "msgq", "inspect")
    assert clash.code == 1
    error = clash.err.strip().splitlines()[-1]
    from ipctool import __version__

    assert f"ipctool {__version__}" in error and "ipctool-dupq 1.0" in error, error
    fixed = ipctool(tmp_path, "msgq", "inspect", "--limits", IPCTOOL_DISABLE_PLUGINS="ipctool-dupq")
    assert fixed.code == 0, fixed.err


def test_load_only_some_plugins(tmp_path: Path) -> None:
    good_plugin(tmp_path)
    only_fake = ipctool(tmp_path, "msgq", "inspect", IPCTOOL_LOAD_PLUGINS="fake")
    assert_one_line_error(only_fake, "", 2)
    assert "no such command 'msgq'" in only_fake.err
    assert ipctool(tmp_path, "fake", "send", "y", IPCTOOL_LOAD_PLUGINS="fake").code == 0
    none = ipctool(tmp_path, "--help", IPCTOOL_LOAD_PLUGINS="")
    assert b"Messages:" not in none.stdout and b"fake" not in none.stdout


MODULES_AT_EXIT = """
import atexit, json, sys
report = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(report, "w")))
from ipctool.cli import main
main()
"""


def imported_modules(root: Path, *args: str, input: bytes = b"") -> set[str]:
    """Every module ipctool had imported when it exited (importlib imports included,
    which -X importtime does not show)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    report = root / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", MODULES_AT_EXIT, str(report), *args],
        input=input,
        capture_output=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(report.read_text()))


HEAVY = {
    "rich",
    "sysv_ipc",
    "posix_ipc",
    "socket",
    "ctypes",
    "ipctool_plugins.msgq.commands",
    "ipctool_plugins.sem.commands",
}
# The core's waits, relay and readiness load only in the verbs that use them.
CORE_ON_DEMAND = {"ipctool.waiting", "ipctool.relay", "ipctool.ready"}


def test_help_imports_no_mechanism_code(tmp_path: Path) -> None:
    good_plugin(tmp_path)
    modules = imported_modules(tmp_path, "--help")
    assert not modules & (HEAVY | CORE_ON_DEMAND | {"ipctool_fake_cmds"}), modules & HEAVY
    assert "ipctool_fake" in modules  # the plugin's small registration module is fine


def test_msgq_send_imports_only_what_it_uses(tmp_path: Path, sysv_key: str) -> None:
    good_plugin(tmp_path)
    modules = imported_modules(tmp_path, "msgq", "send", sysv_key, input=b"x")
    assert {
        "sysv_ipc",
        "ipctool_plugins.msgq.commands",
    } <= modules  # the check sees importlib imports
    assert not modules & {"rich", "posix_ipc", "ipctool_fake_cmds", "socket"}
    assert not modules & {"ipctool.relay", "ipctool.ready"}  # send uses neither


def test_sem_recv_imports_only_what_it_uses(tmp_path: Path) -> None:
    from ipctool.testkit import unique_key
    from ipctool_plugins.sem.testing import remove_sysv

    good_plugin(tmp_path)
    key = hex(unique_key())
    try:
        assert run("sem", "send", key).code == 0
        modules = imported_modules(tmp_path, "sem", "recv", key)
    finally:
        remove_sysv(key)
    assert {"ctypes", "ipctool_plugins.sem.sysv"} <= modules
    assert not modules & {"rich", "posix_ipc", "sysv_ipc", "ipctool_fake_cmds", "socket"}
    assert not modules & {"ipctool.relay", "ipctool_plugins.sem.objects"}


def test_unix_send_imports_only_what_it_uses(tmp_path: Path) -> None:
    import contextlib

    from ipctool.testing import start_receiver, unique_path

    path = unique_path(".sock")
    receiver = start_receiver("unix", "recv", path, stdout=subprocess.DEVNULL).process
    try:
        modules = imported_modules(tmp_path, "unix", "send", path, input=b"x")
        assert receiver.wait(timeout=10) == 0
    finally:
        receiver.kill()
        receiver.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    assert {"socket", "ipctool.sockets", "ipctool.relay"} <= modules
    assert not modules & {"rich", "sysv_ipc", "posix_ipc", "ipctool.sockdiag"}
    assert not modules & {"ipctool_plugins.unix.objects", "ipctool_plugins.unix.diag"}


def test_tcp_send_imports_only_what_it_uses(tmp_path: Path) -> None:
    from ipctool.testing import start_receiver

    started = start_receiver("tcp", "recv", "127.0.0.1:0", stdout=subprocess.DEVNULL)
    try:
        modules = imported_modules(tmp_path, "tcp", "send", started.target, input=b"x")
        assert started.process.wait(timeout=10) == 0
    finally:
        started.process.kill()
        started.process.wait()
    assert {"socket", "ipctool.sockets", "ipctool.relay", "ipctool.inet"} <= modules
    assert not modules & {"rich", "sysv_ipc", "posix_ipc", "ipctool.sockdiag", "ipctool.inetdiag"}
    assert "ipctool_plugins.tcp.objects" not in modules


def test_version_no_args_and_unknown_commands() -> None:
    from ipctool import __version__

    version = subprocess.run(command("--version"), capture_output=True, check=True)
    assert version.stdout == f"ipctool {__version__}\n".encode()
    bare = subprocess.run(command(), capture_output=True)
    assert bare.returncode == 2 and b"Usage:" in bare.stderr
    unknown = subprocess.run(command("nosuch"), capture_output=True)
    assert unknown.returncode == 2
    assert unknown.stderr.decode().count("\n") == 1
    assert "no such command 'nosuch'" in unknown.stderr.decode()


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("ipctool")
    done = subprocess.run([str(script), "--version"], capture_output=True, check=True)
    assert done.stdout.startswith(b"ipctool ")


@pytest.mark.slow
def test_wheel_maps_plugins_to_a_distinct_package(tmp_path: Path) -> None:
    root = Path(__file__).parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("ipctool-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ipctool_plugins/msgq/__init__.py" in names
    assert not [n for n in names if n.startswith("plugins/")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    section = text.split("[ipctool]\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert {"msgq = ipctool_plugins.msgq", "fifo = ipctool_plugins.fifo"} <= set(section)
    assert "ipctool_plugins/fifo/commands.py" in names
    built = {n.split("/")[1] for n in accelerators(names)}
    assert built == {"msgq", "udp"}, "msgq's and udp's C batches were not built (the suite has gcc)"


def accelerators(names: list[str]) -> list[str]:
    return [
        n
        for n in names
        if n.startswith(("ipctool_plugins/msgq/_batch.", "ipctool_plugins/udp/_batch."))
        and n.endswith(".so")
    ]


@pytest.mark.slow
def test_without_a_compiler_the_wheel_builds_without_the_accelerator(tmp_path: Path) -> None:
    """msgq's and udp's C batches are optional extensions: where they cannot be
    compiled, ipctool still builds (msgq then runs on sysv_ipc alone and udp on its
    Python loops, as with IPCTOOL_NO_NATIVE, which tests/test_msgq.py and
    tests/test_udp.py run). In a copy, so that no earlier build is reused."""
    import shutil

    root = Path(__file__).parents[1]
    copy = tmp_path / "ipctool"
    ignored = (".venv", ".git", "*.egg-info", "build", "__pycache__", "*.so", ".*_cache")
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns(*ignored))
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run(
        [*pip, "-w", str(tmp_path), str(copy)],
        env={**os.environ, "CC": "false"},  # a compiler that always fails
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    (wheel,) = tmp_path.glob("ipctool-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "ipctool_plugins/msgq/sysv.py" in names and not accelerators(names)


def test_every_public_api_name_resolves() -> None:
    import ipctool.api as api

    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def test_plugin_whose_commands_exit_is_reported_not_obeyed(tmp_path: Path) -> None:
    good_plugin(tmp_path, dist="ipctool-late", name="late")
    (tmp_path / "ipctool_late_cmds.py").write_text("raise SystemExit(0)\n")
    late = ipctool(tmp_path, "late", "send", "x")
    assert_one_line_error(late, "late", 1)
    assert "ipctool-late" in late.err and "broken" in late.err
    listed = ipctool(tmp_path, "plugins", "--json")
    assert listed.code == 0
    assert {p["plugin"] for p in listed.json()} >= {"msgq", "late"}


def test_every_api_name_is_exported_and_resolves() -> None:
    """ipctool.api's lazy table and __all__ name the same things, and each loads."""
    import ipctool.api as api

    lazy = set(api._LAZY)
    assert lazy <= set(api.__all__), sorted(lazy - set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None, name
