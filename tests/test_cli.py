"""The core's command line: debug switch, error lines, stdout failures outside the verbs."""

from __future__ import annotations

import os

import pytest

from ipctool.testing import assert_one_line_error, run


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
