"""The `ipctool` command: a typer app whose mechanism groups load on first use.

Start-up is paid on every call in a shell loop and on every TAB press, so the
top-level group lists mechanisms from their `Mechanism` records alone and
imports a mechanism's commands only when that mechanism is run or asked for
help. Nothing here imports rich, sysv_ipc or posix_ipc.
"""

import importlib
import sys
from typing import Annotated, Any

import typer

from ipctool import __version__, runner
from ipctool._click import (
    ClickException,
    Command,
    CommandInfo,
    CompletionItem,
    Context,
    HelpFormatter,
    LazyCompletionGroup,
    NoArgsIsHelpError,
    TyperGroup,
    UsageError,
    app_texts,
    build_command,
    click_command,
    command_infos,
    option_completions,
)
from ipctool.contract import FAMILIES, Mechanism
from ipctool.errors import ExitCode, IpcError, describe, printable, say
from ipctool.registry import get_registry, warn

TOOL_COMMANDS_SECTION = "Tool"
CORE_VERBS = ("inspect", "clean")  # what ipctool.verbs builds from an ObjectSource
VERB_ORDER = {verb: i for i, verb in enumerate(("send", "recv", "inspect", "clean"))}

HELP = """Send, receive, inspect and clean Linux IPC objects from the shell.

Every mechanism has the same four verbs: send (stdin to the object), recv
(the object to stdout), inspect (what exists, who uses it, limits; --json for
scripts) and clean (remove one object, or stale ones, with --dry-run).
"""

EPILOG = """\b
Examples:
  echo hi | ipctool msgq send 12345     # SysV queue with key 12345
  ipctool msgq recv 12345               # prints: hi
  ipctool msgq inspect --json
  ipctool msgq clean --stale --dry-run
  ipctool plugins

\b
Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, 4 permission denied,
5 would block, 6 refused (in use or not yours), 7 too large, 124 timeout,
130 interrupted, 141 output pipe closed.
"""


class VerbGroup(TyperGroup):
    """One mechanism's verbs; each becomes a click command only when it is used.

    typer would build every verb's parameters up front; a call runs one verb.
    """

    def __init__(self, mechanism: str, sub_app: typer.Typer, objects: str | None = None) -> None:
        help_text, epilog = app_texts(sub_app)
        super().__init__(
            name=mechanism,
            help=help_text,
            epilog=epilog,
            no_args_is_help=True,
            subcommand_metavar="VERB [ARGS]...",
            rich_markup_mode=None,
            context_settings=runner.APP_SETTINGS["context_settings"],
        )
        self.mechanism = mechanism
        self.verbs: dict[str, CommandInfo] = command_infos(sub_app)
        # The core's inspect and clean, for a mechanism that hands over its objects
        # (built from the ObjectSource, imported, only when one of them is used).
        self.core_verbs = {} if objects is None else {v: objects for v in CORE_VERBS}
        for verb in self.verbs:
            self.core_verbs.pop(verb, None)  # a plugin's own verb wins

    def list_commands(self, ctx: Context) -> list[str]:
        return self.verb_names()

    def verb_names(self) -> list[str]:
        return sorted({*self.verbs, *self.core_verbs}, key=lambda v: (VERB_ORDER.get(v, 9), v))

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in self.core_verbs:
            from ipctool.verbs import CORE_VERBS as builders

            self.verbs[cmd_name] = builders[cmd_name](self.mechanism, self.core_verbs[cmd_name])
        if cmd_name not in self.commands and cmd_name in self.verbs:
            command = build_command(self.verbs[cmd_name], runner.APP_SETTINGS)
            if command.callback is not None:
                command.callback = runner.guarded(self.mechanism, command.callback)
            self.commands[cmd_name] = command
        return self.commands.get(cmd_name)


def load_mechanism_group(mech: Mechanism) -> VerbGroup:
    """Import a mechanism's commands module; its verbs are built when used."""
    module_name, _, attribute = mech.commands.partition(":")
    sub_app = getattr(importlib.import_module(module_name), attribute or "app")
    return VerbGroup(mech.name, sub_app, mech.objects)


class MechanismGroup(LazyCompletionGroup):
    """Top-level group: built-in commands plus one lazily loaded group per mechanism."""

    current: str | None = None  # the mechanism being run, for error lines

    def list_commands(self, ctx: Context) -> list[str]:
        return [*get_registry().mechanisms, *self.commands]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        registry = get_registry()
        if cmd_name in registry.conflicts:
            raise IpcError(None, registry.conflict_message(cmd_name))
        mech = registry.mechanisms.get(cmd_name)
        if mech is None:
            return None
        MechanismGroup.current = cmd_name
        try:
            group = load_mechanism_group(mech)
        except (Exception, SystemExit) as exc:  # a plugin's sys.exit is a broken plugin too
            plugin = registry.providers[cmd_name]
            raise IpcError(None, f"plugin {plugin.label} is broken: {describe(exc)}") from exc
        self.commands[cmd_name] = group
        return group

    def _sections(self) -> dict[str, list[tuple[str, str]]]:
        sections: dict[str, list[tuple[str, str]]] = {f: [] for f in FAMILIES}
        for name, mech in get_registry().mechanisms.items():
            sections.setdefault(mech.family, []).append((name, mech.summary))
        sections[TOOL_COMMANDS_SECTION] = [
            (name, cmd.get_short_help_str(80)) for name, cmd in self.commands.items()
        ]
        return {title: sorted(rows) for title, rows in sections.items() if rows}

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        # Click would call get_command (an import) per name to get its help.
        for title, rows in self._sections().items():
            with formatter.section(title):
                formatter.write_dl(rows)

    def shell_complete(self, ctx: Context, incomplete: str) -> list[CompletionItem]:
        items = [
            CompletionItem(name, help=summary)
            for rows in self._sections().values()
            for name, summary in rows
            if name.startswith(incomplete)
        ]
        return items + option_completions(self, ctx, incomplete)


def show_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"ipctool {__version__}\n")
        raise typer.Exit()


app = typer.Typer(
    cls=MechanismGroup,
    name="ipctool",
    help=HELP,
    epilog=EPILOG,
    subcommand_metavar="MECHANISM VERB [ARGS]...",
    **runner.APP_SETTINGS,
)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=show_version, help="Print the version."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show a traceback for unexpected errors.")
    ] = False,
) -> None:
    if debug:
        runner.debug = True
    for message in get_registry().warnings:
        warn(message)


@app.command("plugins")
def plugins_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document for scripts.")] = False,
) -> None:
    """List installed plugins: distribution, version, mechanisms and verbs.

    \b
    Examples:
      ipctool plugins
      ipctool plugins --json | jq '.[].mechanisms[].name'
    """
    from ipctool import output

    registry = get_registry()
    rows: list[dict[str, Any]] = []  # the JSON document
    for plugin in registry.plugins:
        mechanisms: list[dict[str, Any]] = []
        for mech in plugin.mechanisms:
            try:
                verbs = sorted(load_mechanism_group(mech).verb_names())
            except (Exception, SystemExit) as exc:
                verbs = []
                warn(f"plugin {plugin.label}: {mech.name}: {describe(exc)}")
            mechanisms.append({"name": mech.name, "family": mech.family, "verbs": verbs})
        rows.append(
            {
                "plugin": plugin.name,
                "distribution": plugin.distribution,
                "version": plugin.version,
                "mechanisms": mechanisms,
            }
        )
    if as_json:
        output.print_json(rows)
        return
    table = [
        (r["plugin"], r["distribution"], r["version"], m["name"], " ".join(m["verbs"]))
        for r in rows
        for m in r["mechanisms"]
    ]
    output.print_table(
        "ipctool plugins", ["plugin", "distribution", "version", "mechanism", "verbs"], table
    )


def usage_line(err: UsageError) -> str:
    path = err.ctx.command_path if err.ctx else "ipctool"
    where = path.partition(" ")[2] or None
    message = err.format_message().rstrip(".")
    message = message[0].lower() + message[1:] if message else message
    hint = f" (see '{printable(path, False)} --help')"
    return ": ".join(printable(p, False) for p in ("ipctool", where, message) if p) + hint


def run(args: list[str]) -> int:
    command = click_command(app)
    try:
        code = command.main(args, prog_name="ipctool", standalone_mode=False)
    except NoArgsIsHelpError as err:
        say(err.ctx.get_help())
        return ExitCode.USAGE
    except UsageError as err:
        say(usage_line(err))
        return ExitCode.USAGE
    except ClickException as err:
        say(f"ipctool: {printable(err.format_message(), False)}")
        return err.exit_code
    except IpcError as err:
        say(err.line(MechanismGroup.current))
        return err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    return code if isinstance(code, int) else 0


def main() -> None:
    from ipctool import interrupts

    interrupts.quiet_phase()  # Ctrl-C before a verb runs: exit 130, nothing said
    runner.name_stdout_failures()
    try:
        code = run(sys.argv[1:])
        runner.flush_stdout()
    except IpcError as err:  # stdout failed in the final flush
        say(err.line(MechanismGroup.current))
        code = err.exit_code
    except BrokenPipeError:
        runner.silence_stdout()
        code = ExitCode.BROKEN_PIPE
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
    except Exception as exc:  # a bug in ipctool itself: still one line
        try:
            runner.report_unexpected(MechanismGroup.current, exc)
        except typer.Exit as done:
            code = done.exit_code
    interrupts.done_phase()
    sys.exit(code)
