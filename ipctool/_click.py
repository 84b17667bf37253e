"""Every name ipctool takes from typer's internals, and from the click it bundles.

typer 0.26+ vendors click as `typer._click`, and ipctool leans on parts of
typer that are not its documented API: the command classes, how an app becomes
click commands, and the shell-completion machinery. The rest of ipctool reaches
them through this module only, and tests/test_compat.py checks each one (that
it exists, its call shape, that typer still calls it), so a typer upgrade that
moves or renames one fails there, naming it, and is mended here.

Start-up matters (every TAB runs ipctool): this imports nothing that `import
typer` has not loaded already, and changes typer's completion set-up only when
a TAB asks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

import typer
import typer.main
from typer._click import Command, Context, HelpFormatter, Parameter
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer._click.shell_completion import CompletionItem
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import CommandInfo

# The environment variable a TAB sets, as click derives it from the prog name.
COMPLETE_VAR = "_IPCTOOL_COMPLETE"


def click_command(app: typer.Typer) -> Command:
    """The click command typer builds for an app (the `cls=` given to typer.Typer)."""
    return typer.main.get_command(app)


def command_infos(app: typer.Typer) -> dict[str, CommandInfo]:
    """An app's commands by the name typer gives each, without building any."""
    return {command_name(info): info for info in app.registered_commands}


def command_name(info: CommandInfo) -> str:
    if info.name:
        return info.name
    callback: Callable[..., Any] | None = info.callback
    if callback is None:
        raise ValueError("a typer command without a callback")
    return typer.main.get_command_name(callback.__name__)


def app_texts(app: typer.Typer) -> tuple[str | None, str | None]:
    """An app's help and epilog, None where typer holds a placeholder for "not given"."""
    info = app.info
    help_text = info.help if isinstance(info.help, str) else None
    epilog = info.epilog if isinstance(info.epilog, str) else None
    return help_text, epilog


def build_command(info: CommandInfo, settings: dict[str, Any]) -> Command:
    """The click command for one of an app's commands, built alone (typer builds all)."""
    single = typer.Typer(**settings)
    single.registered_commands.append(info)
    return typer.main.get_group(single).commands[command_name(info)]


def option_completions(group: TyperGroup, ctx: Context, incomplete: str) -> list[CompletionItem]:
    """A group's option completions only: TyperGroup.shell_complete would also list
    (so build, so import) every subcommand, which a lazy group lists itself."""
    return Command.shell_complete(group, ctx, incomplete)


class LazyCompletionGroup(TyperGroup):
    """A top-level group that loads typer's bash/zsh/fish support only when a TAB asks.

    The apps are made with add_completion=False, which leaves those shells
    unregistered; registering them on every start would import more.
    """

    # typer's main() calls this with the complete variable before parsing anything.
    def _main_shell_completion(
        self, ctx_args: MutableMapping[str, Any], prog_name: str, complete_var: str | None = None
    ) -> None:
        if os.environ.get(complete_var or COMPLETE_VAR):
            enable_shell_completion()
        super()._main_shell_completion(ctx_args, prog_name, complete_var)


def plain_help_text(text: str) -> str:
    return text


def enable_shell_completion() -> None:
    """Register typer's bash, zsh and fish completion classes, with plain help texts.

    typer passes zsh and fish help texts through rich to strip rich markup,
    which ipctool's plain help never has: importing rich would cost ~150 ms a TAB.
    """
    from typer import _completion_classes

    _completion_classes._sanitize_help_text = plain_help_text
    _completion_classes.completion_init()


def completion_script(shell: str, prog_name: str, complete_var: str = COMPLETE_VAR) -> str:
    """typer's completion script for a shell (bash, zsh, fish): each TAB runs the
    program with complete_var set."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=prog_name, complete_var=complete_var, shell=shell)


__all__ = [
    "COMPLETE_VAR",
    "ClickException",
    "Command",
    "CommandInfo",
    "CompletionItem",
    "Context",
    "HelpFormatter",
    "LazyCompletionGroup",
    "NoArgsIsHelpError",
    "Parameter",
    "TyperArgument",
    "TyperCommand",
    "TyperGroup",
    "TyperOption",
    "UsageError",
    "app_texts",
    "build_command",
    "click_command",
    "command_infos",
    "command_name",
    "completion_script",
    "enable_shell_completion",
    "option_completions",
]
