"""The core's command line: debug switch, error lines, stdout failures outside the verbs."""

from __future__ import annotations

import os
import subprocess

import pytest

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
