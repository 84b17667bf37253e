"""The shared parsers of targets and option values: exact text only, nothing around it."""

from __future__ import annotations

import pytest
from conftest import sysv_keys_present

from ipctool.errors import UsageError
from ipctool.targets import (
    parse_duration,
    parse_id,
    parse_mode,
    parse_sysv_key,
    parse_timeout,
)
from ipctool.testing import run

PARSERS = {
    parse_sysv_key: "12345",
    parse_id: "7",
    parse_duration: "2h",
    parse_mode: "0600",
    parse_timeout: "1.5",
}


@pytest.mark.parametrize("parse", PARSERS, ids=lambda parse: parse.__name__)
@pytest.mark.parametrize("around", ["{}\n", "\n{}", " {}", "{} ", "\t{}", "{}\r"])
def test_whitespace_around_a_value_is_refused(parse, around: str) -> None:
    good = PARSERS[parse]
    parse(good)  # the bare value is fine
    with pytest.raises(UsageError):
        parse(around.format(good))


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_id, "1_0"),
        (parse_id, "+5"),
        (parse_mode, "+600"),
        (parse_mode, "6_00"),
        (parse_timeout, "1_0"),
        (parse_timeout, "+1"),
        (parse_timeout, "nan"),
    ],
)
def test_forms_int_and_float_would_take_are_refused(parse, text: str) -> None:
    with pytest.raises(UsageError):
        parse(text)


def test_values_that_stay_valid() -> None:
    assert parse_sysv_key("0x3039") == parse_sysv_key("12345") == 12345
    assert parse_id("0x10") == 16
    assert parse_duration("90") == 90 and parse_duration("1.5m") == 90
    assert parse_mode("644") == 0o644
    assert parse_timeout("0.25") == 0.25 and parse_timeout("inf") is None
    assert parse_timeout("3") == 3 and parse_timeout(".5") == 0.5


def test_key_with_a_trailing_newline_is_a_usage_error(sysv_key: str) -> None:
    result = run("msgq", "send", f"{int(sysv_key, 16)}\n", "--data", "x")
    assert result.code == 2, result.err
    assert int(sysv_key, 16) not in sysv_keys_present()
