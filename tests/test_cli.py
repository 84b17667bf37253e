"""The core's command line: debug switch, error lines, stdout failures outside the verbs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import sysv_keys_present

from ipctool.testing import Result, assert_one_line_error, command, run


def env_with(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k != "IPCTOOL_DEBUG"}, **extra}


@pytest.mark.parametrize("value", ["0", "", "no", "false", "off"])
def test_debug_off_values_show_no_traceback(value: str) -> None:
    result = run("msgq", "recv", "0x7e00fffe", env=env_with(IPCTOOL_DEBUG=value))
    assert_one_line_error(result, "msgq", 3)


@pytest.mark.parametrize("value", ["1", "true", "yes", "TRUE"])
def test_debug_on_values_show_a_traceback(value: str) -> None:
    result = run("msgq", "recv", "0x7e00fffe", env=env_with(IPCTOOL_DEBUG=value))
    assert result.code == 3
    assert "Traceback" in result.err


@pytest.mark.parametrize(
    ("target", "shown"),
    [
        ("/no\nsuch", "/no\\nsuch"),
        ("/tab\there", "/tab\\there"),
        ("/esc\x1b[31mred", "/esc\\x1b[31mred"),
        ("/c1\x9bcsi", "/c1\\x9bcsi"),
        ("/back\\slash", "/back\\\\slash"),
        ("1\x1b]0;title\x07", "1\\x1b]0;title\\x07"),
        ("/bad\udcffbyte", "/bad\\xffbyte"),  # an undecodable byte on the command line
    ],
)
def test_control_characters_in_a_target_stay_on_one_escaped_line(target: str, shown: str) -> None:
    result = run("msgq", "recv", target)
    assert result.code in (2, 3), result.err
    assert_one_line_error(result, "msgq", result.code)
    line = result.stderr.decode()
    assert f": {shown}: " in line, line
    assert not any(c < " " or "\x7f" <= c <= "\x9f" for c in line.rstrip("\n")), repr(line)


def test_usage_errors_from_options_stay_on_one_line() -> None:
    result = run("msgq", "recv", "0x7e00fffe", "--bogus\n\x1b[2J")
    assert_one_line_error(result, "msgq", 2)
    assert "\x1b" not in result.err and "--bogus\\x0a\\x1b[2J " in result.err


def into_dev_full(*args: str) -> Result:
    with open("/dev/full", "wb") as full:
        done = subprocess.run(command(*args), stdout=full, stderr=subprocess.PIPE, timeout=30)
    return Result(done.returncode, b"", done.stderr)


@pytest.mark.parametrize(
    ("args", "mechanism"),
    [
        (["--help"], None),
        (["--version"], None),
        (["plugins", "--json"], None),
        (["plugins"], None),
        (["msgq", "--help"], "msgq"),
        (["msgq", "send", "--help"], "msgq"),
        (["msgq", "inspect", "--json"], "msgq"),
        (["msgq", "inspect", "--limits", "--json"], "msgq"),
        (["msgq", "inspect", "--limits"], "msgq"),
    ],
)
def test_a_full_stdout_is_named_on_one_line(args: list[str], mechanism: str | None) -> None:
    result = into_dev_full(*args)
    where = f"ipctool: {mechanism}: " if mechanism else "ipctool: "
    assert (result.code, result.err) == (1, f"{where}stdout: no space left on device\n")


INSTALLED = Path(sys.executable).with_name("ipctool")  # the launcher pip installs


def run_installed(*args: str, stdin: int | None = None, stdout: int | None = None) -> Result:
    done = subprocess.run(
        [str(INSTALLED), *args],
        stdin=stdin,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        timeout=30,
        check=False,
    )
    return Result(done.returncode, done.stdout or b"", done.stderr)


def test_a_directory_as_stdin_is_named_by_the_verbs_that_read_it(tmp_path, sysv_key: str) -> None:
    """Python itself cannot start with a directory as stdin ("Fatal Python error:
    init_sys_streams"); the installed ipctool can, and says so on one line."""
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        sent = run_installed("msgq", "send", sysv_key, stdin=directory)
        assert (sent.code, sent.err) == (2, "ipctool: msgq: stdin: is a directory\n")
        assert int(sysv_key, 16) not in sysv_keys_present()
        assert run("msgq", "send", sysv_key, "--data", "ok").code == 0
        received = run_installed("msgq", "recv", sysv_key, stdin=directory)
        assert (received.code, received.stdout, received.err) == (0, b"ok", "")
    finally:
        os.close(directory)


def test_a_directory_as_stdout_is_named(tmp_path) -> None:
    directory = os.open(tmp_path, os.O_RDONLY)
    try:
        result = run_installed("--version", stdout=directory)
    finally:
        os.close(directory)
    assert (result.code, result.err) == (2, "ipctool: stdout: is a directory\n")
