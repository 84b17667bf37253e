"""The README is part of the feature: what it promises scripts and plugin authors must hold."""

import re
from pathlib import Path

from ipctool import hookspecs
from ipctool.errors import ExitCode

README = (Path(__file__).parents[1] / "README.md").read_text()


def test_exit_code_table_matches_the_code() -> None:
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.MULTILINE))
    assert sorted(map(int, table)) == sorted(code.value for code in ExitCode)


def test_every_hook_is_documented() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("ipctool_")]
    assert hooks
    for hook in hooks:
        assert f"`{hook}(" in README, hook


def test_readme_names_the_test_command_ci_runs() -> None:
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "bash tests/run" in README and "tests/run" in ci
