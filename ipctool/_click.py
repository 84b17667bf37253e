"""The click that typer bundles (typer 0.26+ vendors it as typer._click).

ipctool reaches click's classes through this module only, so a typer upgrade
that moves them touches one file.
"""

from typer._click import Context, HelpFormatter
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
from typer._click.shell_completion import CompletionItem

__all__ = [
    "ClickException",
    "CompletionItem",
    "Context",
    "HelpFormatter",
    "NoArgsIsHelpError",
    "UsageError",
]
