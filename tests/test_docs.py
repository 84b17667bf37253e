"""Generated docs: man pages and completion scripts are current, man pages render
cleanly, and shell completion really completes (through ipctool, as a TAB would)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ipctool.testing import run

ROOT = Path(__file__).resolve().parent.parent
MAN_PAGES = sorted((ROOT / "man").glob("*.1"))
BASH_SCRIPT = ROOT / "completions" / "ipctool.bash"

# (command line up to the cursor, what TAB must offer)
CASES = [
    ("ipctool ms", "msgq"),
    ("ipctool msgq s", "send"),
    ("ipctool msgq send --ti", "--timeout"),
    ("ipctool sem h", "hold"),
]


def completion_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPCTOOL_")}
    return {**env, **extra}


def test_generated_files_are_current() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ipctool.gendocs", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"man/ or completions/ is stale:\n{done.stderr}"


def test_man_pages_exist() -> None:
    names = {page.name for page in MAN_PAGES}
    assert {"ipctool.1", "ipctool-msgq.1", "ipctool-plugins.1"} <= names


@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda page: page.name)
def test_man_page_renders_without_warnings(page: Path) -> None:
    if shutil.which("groff"):
        cmd = ["groff", "-man", "-ww", "-z", str(page)]
    elif shutil.which("man"):
        cmd = ["man", "--warnings", "-l", str(page)]
    else:
        pytest.skip("neither groff nor man is installed")
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MANWIDTH": "80"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", f"{' '.join(cmd)} warned:\n{done.stderr}"


def test_msgq_page_text() -> None:
    if not shutil.which("groff"):
        pytest.skip("groff is not installed")
    done = subprocess.run(
        ["groff", "-man", "-Tascii", "-P-cbou", str(ROOT / "man" / "ipctool-msgq.1")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = done.stdout
    for expected in ("ipctool msgq send [OPTIONS] [KEY|/NAME]", "--timeout SECONDS", "Examples:"):
        assert expected in text
    assert "printf 'a\\nb\\n' | ipctool msgq send 0x3039 --lines --type 7" in text
    assert "\b" not in text


@pytest.mark.parametrize(("line", "expected"), CASES)
def test_bash_completion_protocol(line: str, expected: str) -> None:
    """What the bash script runs on TAB: ipctool with COMP_WORDS/COMP_CWORD set."""
    words = line.split()
    env = completion_env(
        _IPCTOOL_COMPLETE="complete_bash", COMP_WORDS=line, COMP_CWORD=str(len(words) - 1)
    )
    result = run(env=env)
    assert result.code == 0, result.err
    assert expected in result.stdout.decode().split(), (result.stdout, result.err)


@pytest.mark.parametrize(("line", "expected"), CASES)
@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_fish_completion_protocol(shell: str, line: str, expected: str) -> None:
    env = completion_env(
        _IPCTOOL_COMPLETE=f"complete_{shell}",
        _TYPER_COMPLETE_ARGS=line,
        _TYPER_COMPLETE_FISH_ACTION="get-args",
    )
    result = run(env=env)
    assert result.code == 0, result.err
    assert expected in result.stdout.decode(), (result.stdout, result.err)


@pytest.mark.skipif(not shutil.which("bash"), reason="bash is not installed")
def test_bash_script_completes(tmp_path: Path) -> None:
    """Source completions/ipctool.bash in bash and call its function as TAB would."""
    shim = tmp_path / "ipctool"  # the `ipctool` the script runs: this checkout's
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ipctool "$@"\n')
    shim.chmod(0o755)
    script = [f"source '{BASH_SCRIPT}'"]
    for line, _ in CASES:
        script += [
            f"COMP_WORDS=({line}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )); COMPREPLY=()",
            "_ipctool_completion ipctool",
            'echo "${COMPREPLY[*]}"',
        ]
    env = completion_env(PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    offered = done.stdout.splitlines()
    assert len(offered) == len(CASES), (done.stdout, done.stderr)
    for (line, expected), got in zip(CASES, offered, strict=True):
        assert expected in got.split(), f"{line!r}<TAB> offered {got!r}; stderr: {done.stderr}"
