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
