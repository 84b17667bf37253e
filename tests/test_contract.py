"""The shared contract every registered mechanism must pass."""

import pytest

from ipctool.testing import check_contract, contract_cases, mechanisms_without_cases


def test_every_mechanism_has_contract_cases() -> None:
    assert mechanisms_without_cases() == []


@pytest.mark.parametrize("case", contract_cases(), ids=str)
def test_contract(case) -> None:
    check_contract(case)
