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
    `commands` points at the module with the verbs (and `objects` at the
    `ObjectSource` the core's inspect and clean use); import nothing heavy here.

    Example (a plugin's `__init__.py`; the README has the whole plugin)::

        from ipctool.api import Mechanism, hookimpl

        @hookimpl
        def ipctool_mechanisms():
            return [
                Mechanism(
                    name="drop",
                    summary="Drop files: one message in a file of a spool directory.",
                    commands="drop.commands:app",
                    objects="drop.objects:DropSource",
                    family="Messages",
                )
            ]
    """
    raise NotImplementedError


@hookspec
def ipctool_contract_cases() -> list[ContractCase]:
    """Return how the shared contract test exercises this plugin's mechanisms.

    Called only by `ipctool.testing`; import test helpers inside the hook.

    Example (the kit gives unique targets; `remove` cleans up without ipctool)::

        import os
        from ipctool.api import ContractCase, hookimpl
        from ipctool.testing import unique_path

        @hookimpl
        def ipctool_contract_cases():
            return [
                ContractCase(
                    mechanism="fifo",
                    label="fifo",
                    new_target=lambda: unique_path(".fifo"),
                    remove=lambda path: os.path.exists(path) and os.unlink(path),
                    bad_target="/",
                    recv_first=True,
                    stream=True,
                )
            ]
    """
    raise NotImplementedError
