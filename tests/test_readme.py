"""The README is part of the feature: what it promises scripts and plugin authors must hold."""

import re
from pathlib import Path

from ipctool import hookspecs
from ipctool.errors import ExitCode

README = (Path(__file__).parents[1] / "README.md").read_text()


MEANINGS = {  # the words each code's README row must use
    ExitCode.OK: "success",
    ExitCode.FAILURE: "failure",
    ExitCode.USAGE: "usage",
    ExitCode.NOT_FOUND: "not found",
    ExitCode.PERMISSION: "permission denied",
    ExitCode.WOULD_BLOCK: "would block",
    ExitCode.REFUSED: "refused",
    ExitCode.TOO_LARGE: "too large",
    ExitCode.TIMEOUT: "timeout",
    ExitCode.INTERRUPTED: "interrupted",
    ExitCode.BROKEN_PIPE: "pipe was closed",
}


def test_exit_code_table_matches_the_code() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.MULTILINE))
    assert sorted(map(int, table)) == sorted(code.value for code in ExitCode)
    for code, words in MEANINGS.items():
        assert words in table[str(code.value)].lower(), (code, table[str(code.value)])


def test_every_hook_is_documented() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("ipctool_")]
    assert hooks
    for hook in hooks:
        assert f"`{hook}(" in README, hook


def test_readme_names_the_test_command_ci_runs() -> None:
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "bash tests/run" in README and "tests/run" in ci


def test_install_command_and_first_example_run_as_shown(tmp_path: Path) -> None:
    """README's one-command install, in a copy of the tree, gives a working `ipctool`.

    It runs in a private IPC namespace: the example's key 12345 may be in use here."""
    import shutil
    import subprocess

    block = README.split("## Install", 1)[1].split("```", 2)[1].strip()
    command = block.splitlines()[-1]
    assert command.startswith("python3 -m venv .venv")
    root = Path(__file__).parents[1]
    copy = tmp_path / "ipctool"
    shutil.copytree(
        root,
        copy,
        ignore=shutil.ignore_patterns(".venv", ".git", "*.egg-info", "build", "__pycache__"),
    )
    done = subprocess.run(
        ["unshare", "--ipc", "bash", "-c", command],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "hi\n"


def test_plugin_example_passes_its_own_contract(tmp_path: Path) -> None:
    """The README's `drop` plugin, installed as its files say, passes the shared
    contract through ipctool's pytest plugin, as a third party's suite would run it."""
    import os
    import subprocess
    import sys

    section = README.split("### Writing a plugin", 1)[1].split("**Hooks**", 1)[0]
    blocks = re.findall(r"```(?:python|toml)\n# ([^\s:]+)[^\n]*\n(.*?)```", section, re.DOTALL)
    files = dict(blocks)
    assert set(files) >= {"drop/__init__.py", "drop/objects.py", "tests/test_contract.py"}
    for name, text in files.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    import tomllib

    project = tomllib.loads(files["pyproject.toml"])  # a complete, installable project
    assert {"build-system", "project"} <= set(project)
    assert project["project"]["dependencies"] == ["ipctool"]
    info = tmp_path / "drop-1.0.dist-info"  # what pip would leave for the entry point
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: drop\nVersion: 1.0\n")
    entry = files["pyproject.toml"].split("[project.entry-points.ipctool]\n", 1)[1]
    line = entry.split("\n\n", 1)[0].replace('"', "")  # TOML's quotes are not the INI's
    (info / "entry_points.txt").write_text(f"[ipctool]\n{line}\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "DROP_SPOOL": str(tmp_path / "spool"),
    }
    for inherited in ("PYTEST_XDIST_WORKER", "IPCTOOL_TEST_TAG"):  # a run of its own
        env.pop(inherited, None)
    def pytest_there() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    done = pytest_there()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout, done.stdout[-2000:]
    assert "leak check cannot see" not in done.stdout
    # A test that leaves a drop file behind fails the run, and the file is removed.
    (tmp_path / "tests" / "test_leak.py").write_text(LEAKY_TEST)
    leaked = pytest_there()
    assert leaked.returncode == 1 and "leaked IPC objects" in leaked.stdout, leaked.stdout
    assert os.listdir(tmp_path / "spool") == []


LEAKY_TEST = """
from ipctool.testing import unique_name

from drop.objects import spool_path


def test_leaves_a_file_behind():
    with open(spool_path(unique_name().lstrip("/")), "w") as f:
        f.write("forgotten")
"""


def test_hook_docstring_examples_run() -> None:
    """Each hook spec's docstring example is code that runs and returns what the hook must."""
    import textwrap

    from ipctool.contract import ContractCase, Mechanism

    wanted = {"ipctool_mechanisms": Mechanism, "ipctool_contract_cases": ContractCase}
    for hook, kind in wanted.items():
        doc = getattr(hookspecs, hook).__doc__
        code = textwrap.dedent(doc.split("::\n", 1)[1])
        namespace: dict = {}
        exec(compile(code, f"<{hook} docstring>", "exec"), namespace)
        returned = namespace[hook]()
        assert returned and all(isinstance(item, kind) for item in returned), returned


def test_shell_examples_are_one_command_per_line() -> None:
    """Every shell line of the README runs when pasted: no second command sits on
    a line after spaces (only |, &&, ; or & may join commands)."""
    blocks = re.findall(r"```(\w*)\n(.*?)```", README, re.DOTALL)
    lines = [line for lang, body in blocks if lang == "" for line in body.splitlines()]
    assert lines
    crowded = [
        line
        for line in lines
        if re.search(r"\bipctool\b[^|&;#]*\s\s+ipctool\b", line.split(" # ", 1)[0])
    ]
    assert crowded == []
