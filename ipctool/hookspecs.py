"""The hooks a plugin implements. Import `hookimpl` from `ipctool.api`, not from here."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from ipctool.contract import ContractCase, Mechanism

PROJECT = "ipctool"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ipctool_mechanisms() -> list[Mechanism]:
    """Return the mechanisms this plugin provides.

    Called on every start, so it must be cheap: return `Mechanism` records whose
    `commands` points at the module with the verbs; import nothing heavy here.
    """
    raise NotImplementedError


@hookspec
def ipctool_contract_cases() -> list[ContractCase]:
    """Return how the shared contract test exercises this plugin's mechanisms.

    Called only by `ipctool.testing`; import test helpers inside the hook.
    """
    raise NotImplementedError
