"""Man pages, built by walking the click commands: ipctool(1), a page per mechanism
of one distribution, and a page per built-in command such as `plugins`."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ipctool import __version__
from ipctool._click import (
    COMPLETE_VAR,
    Context,
    TyperArgument,
    TyperCommand,
    TyperGroup,
    TyperOption,
    click_command,
)
from ipctool.cli import TOOL_COMMANDS_SECTION, MechanismGroup, app
from ipctool.contract import FAMILIES, VERBS
from ipctool.entrypoints import normalize
from ipctool.errors import ExitCode
from ipctool.gendocs import PROG, PROJECT, generated_note
from ipctool.gendocs.roff import (
    Block,
    bold,
    escape,
    first_paragraph,
    help_blocks,
    italic,
    one_line,
    page_ref,
    render_blocks,
    summary,
    text_line,
)
from ipctool.registry import DISABLE_ENV, LOAD_ENV, get_registry
from ipctool.runner import DEBUG_ENV

EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "Success.",
    ExitCode.FAILURE: "Failure not covered below, including two plugins claiming one mechanism.",
    ExitCode.USAGE: "Usage error: a bad target or option; nothing was touched.",
    ExitCode.NOT_FOUND: "The object does not exist.",
    ExitCode.PERMISSION: "Permission denied.",
    ExitCode.WOULD_BLOCK: "Would block: --nowait was given and the operation would have to wait.",
    ExitCode.REFUSED: (
        "Refused: clean left an object alone because it is in use or not yours; "
        "--force removes it anyway."
    ),
    ExitCode.TOO_LARGE: "Too large: the data does not fit the object's limit.",
    ExitCode.TIMEOUT: (
        "Timeout: --timeout ran out (as timeout(1) exits); with recv --follow it is an "
        "idle limit, and ends with 0."
    ),
    ExitCode.INTERRUPTED: "Interrupted by Ctrl-C (128 + SIGINT).",
    ExitCode.BROKEN_PIPE: "Output pipe closed: the reader went away (128 + SIGPIPE); no message.",
}

ENVIRONMENT = {
    LOAD_ENV: (
        "Comma-separated plugin names (entry-point or distribution names): load only these "
        "plugins. Set but empty, no plugin is loaded."
    ),
    DISABLE_ENV: (
        "Comma-separated plugin names (entry-point or distribution names) never to load; "
        f"this wins over {LOAD_ENV}. The way out when two plugins claim one mechanism."
    ),
    DEBUG_ENV: "1, true or yes (any case): act as --debug, showing a traceback for errors.",
}

Command = TyperCommand | TyperGroup
Param = TyperOption | TyperArgument


# --- click commands -----------------------------------------------------------


def context(command: Command, name: str, parent: Context | None = None) -> Context:
    """A context for reading a command's params and usage, without parsing anything."""
    return Context(command, parent=parent, info_name=name, **command.context_settings)


def option_names(param: Param) -> str:
    def ordered(opts: list[str]) -> list[str]:  # "-t, --type", as click's help has it
        return sorted(opts, key=lambda opt: len(opt) - len(opt.lstrip("-")))

    names = ", ".join(bold(opt) for opt in ordered(param.opts))
    if param.secondary_opts:
        names += " / " + ", ".join(bold(opt) for opt in ordered(param.secondary_opts))
    return names


def describe_range(param_type: Any) -> str | None:
    """'x>=0', '0<=x<=32767', as click's --help shows a number range."""
    low, high = getattr(param_type, "min", None), getattr(param_type, "max", None)
    if low is None and high is None:
        return None
    low_op = "<" if getattr(param_type, "min_open", False) else "<="
    high_op = "<" if getattr(param_type, "max_open", False) else "<="
    if high is None:
        return f"x{'>' if low_op == '<' else '>='}{low}"
    if low is None:
        return f"x{high_op}{high}"
    return f"{low}{low_op}x{high_op}{high}"


def default_text(param: Param, ctx: Context) -> str | None:
    show = getattr(param, "show_default", None)
    if isinstance(show, str):
        return show
    if show is False:
        return None
    default = param.get_default(ctx, call=False)
    if getattr(param, "is_flag", False):
        if not param.secondary_opts:
            return None  # a plain flag is off unless given
        return param.opts[0] if default else param.secondary_opts[0]
    if default is None or default == () or default == []:
        return None
    if callable(default):
        return "(dynamic)"
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return str(getattr(default, "value", default))


def param_entry(param: Param, ctx: Context) -> list[str]:
    """A .TP entry: the names and metavar, then help, default, range, environment."""
    if param.param_type_name == "argument":
        tag = italic(param.make_metavar(ctx))
    else:
        tag = option_names(param)
        if not getattr(param, "is_flag", False) and not getattr(param, "count", False):
            tag += " " + italic(param.make_metavar(ctx))
    notes = [one_line(getattr(param, "help", None))]
    if param.required:
        notes.append("Required.")
    default = default_text(param, ctx)
    if default is not None:
        notes.append(f"Default: {default}.")
    value_range = describe_range(param.type)
    if value_range is not None:
        notes.append(f"Range: {value_range}.")
    envvar = param.envvar
    if envvar:
        names = [envvar] if isinstance(envvar, str) else list(envvar)
        notes.append(f"Environment: {', '.join(names)}.")
    return [".TP", tag, text_line(" ".join(n for n in notes if n))]


def params_section(params: list[Param], ctx: Context, kind: str, title: str) -> list[str]:
    chosen = [p for p in params if p.param_type_name == kind and not getattr(p, "hidden", False)]
    if not chosen:
        return []
    return [title, *(line for p in chosen for line in param_entry(p, ctx))]


def command_params(command: Command, ctx: Context, *, with_help: bool) -> list[Param]:
    """The command's options and arguments, each a TyperOption or TyperArgument."""
    help_option = command.get_help_option(ctx)
    params: list[Param] = []
    for param in command.get_params(ctx):
        if not isinstance(param, TyperOption | TyperArgument):
            raise SystemExit(f"gendocs: {ctx.command_path}: {param!r} is not typer's")
        if with_help or param is not help_option:
            params.append(param)
    return params


def usage(command: Command, ctx: Context) -> list[str]:
    pieces = " ".join(command.collect_usage_pieces(ctx))
    return [f".B {escape(ctx.command_path)}", text_line(pieces)]


def exit_status() -> list[str]:
    missing = set(ExitCode) - set(EXIT_CODES)
    if missing:
        raise SystemExit(f"gendocs: EXIT_CODES has no text for {sorted(missing)}")
    lines = [".SH EXIT STATUS"]
    for code, text in EXIT_CODES.items():
        lines += [".TP", bold(str(int(code))), text_line(text)]
    return lines


def see_also(pages: Iterable[str]) -> list[str]:
    return [".SH SEE ALSO", ",\n".join(page_ref(p) for p in pages)]


# --- pages --------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    """The parts of the CLI one distribution's pages describe, loaded once."""

    root: MechanismGroup
    root_ctx: Context
    distribution: str
    version: str
    mechanisms: dict[str, tuple[str, str]]  # name -> (family, summary), this distribution's
    tools: dict[str, Command]  # built-in commands such as `plugins`: the project's only

    @classmethod
    def load(cls, distribution: str = PROJECT) -> Cli:
        """The CLI as installed; `distribution` may be spelled as pip allows."""
        for var in (LOAD_ENV, DISABLE_ENV):  # document every mechanism, whatever is set
            os.environ.pop(var, None)
        get_registry.cache_clear()
        registry = get_registry()
        root = click_command(app)
        assert isinstance(root, MechanismGroup)
        own = {
            name: registry.providers[name]
            for name in sorted(registry.mechanisms)
            if normalize(registry.providers[name].distribution) == normalize(distribution)
        }
        mechanisms = {name: (m.family, m.summary) for name, m in registry.mechanisms.items()}
        tools: dict[str, Command] = {}
        if normalize(distribution) == normalize(PROJECT):
            distribution, version = PROJECT, __version__
            tools = {  # loaded mechanisms are cached in root.commands too
                name: command
                for name, command in sorted(root.commands.items())
                if name not in registry.mechanisms
                and not command.hidden
                and isinstance(command, TyperCommand | TyperGroup)
            }
        elif own:
            plugin = next(iter(own.values()))
            distribution, version = plugin.distribution, plugin.version  # as its metadata has
        else:
            problems = "".join(f"; {w}" for w in registry.warnings)
            raise SystemExit(f"gendocs: no mechanism of {distribution!r} is installed{problems}")
        return cls(
            root=root,
            root_ctx=context(root, PROG),
            distribution=distribution,
            version=version,
            mechanisms={name: mechanisms[name] for name in own},
            tools=tools,
        )

    def header(self, page: str, name_line: str) -> list[str]:
        source = f"{self.distribution} {self.version}"
        return [
            f'.\\" {generated_note(self.distribution)}',
            f'.TH {escape(page.upper())} 1 "" "{escape(source)}" "User Commands"',
            ".SH NAME",
            f"{escape(page)} \\- {escape(name_line)}",
        ]

    def sections(self) -> dict[str, list[tuple[str, str]]]:
        """Commands by family, in `ipctool --help` order."""
        sections: dict[str, list[tuple[str, str]]] = {}
        families = sorted({f for f, _ in self.mechanisms.values()} - set(FAMILIES))
        for family in (*FAMILIES, *families):
            rows = [(n, s) for n, (f, s) in self.mechanisms.items() if f == family]
            if rows:
                sections[family] = rows
        rows = [(name, first_paragraph(c.help)) for name, c in self.tools.items()]
        if rows:
            sections[TOOL_COMMANDS_SECTION] = rows
        return sections

    def pages(self) -> list[str]:
        return [PROG, *(f"{PROG}-{name}" for name in (*self.mechanisms, *self.tools))]


def main_page(cli: Cli) -> str:
    root, ctx = cli.root, cli.root_ctx
    epilog = help_blocks(root.epilog)
    examples = [b for b in epilog if b.heading == "Examples:"]
    # The epilog's one-paragraph list of exit codes becomes the EXIT STATUS section.
    rest = [b for b in epilog if b not in examples and not b.lines[0].startswith("Exit codes")]
    lines = cli.header(PROG, summary(root.help))
    lines += [".SH SYNOPSIS", *usage(root, ctx), ".br"]
    lines += [
        f".B {PROG}",
        rf"\fIMECHANISM\fR {{{'|'.join(VERBS)}}} [OPTIONS] [ARGS]...",
        ".br",
    ]
    for name in cli.tools:
        sub_ctx = context(cli.tools[name], name, ctx)
        lines += [*usage(cli.tools[name], sub_ctx), ".br"]
    lines.pop()
    lines += [".SH DESCRIPTION", *render_blocks(help_blocks(root.help) + rest)]
    lines += [
        ".PP",
        "Each mechanism and command has its own page, listed under",
        '.BR "SEE ALSO" .',
    ]
    params = command_params(root, ctx, with_help=True)
    lines += params_section(params, ctx, "option", ".SH OPTIONS")
    lines.append(".SH COMMANDS")
    for title, rows in cli.sections().items():
        lines.append(f".SS {escape(title)}")
        for name, text in rows:
            lines += [".TP", bold(name), text_line(text), f"See {page_ref(f'{PROG}-{name}')}."]
    if examples:
        bodies = [textwrap.dedent("\n".join(b.lines[1:])).splitlines() for b in examples]
        lines += [".SH EXAMPLES", *render_blocks(Block(body, True) for body in bodies)]
    lines += exit_status()
    lines.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT.items():
        lines += [".TP", bold(var), text_line(text)]
    lines += [
        ".SH SHELL COMPLETION",
        ".PP",
        "The scripts for bash, zsh and fish (installed with ipctool, or generated in",
        "the source tree's completions/ directory) run",
        f".B {PROG}",
        f"with {bold(COMPLETE_VAR)} set on each TAB,",
        "so they complete every installed plugin's mechanisms, verbs and options.",
    ]
    lines += see_also([*cli.pages()[1:], "ipcs", "ipcrm"])
    return "\n".join(lines) + "\n"


def verb_section(command: Command, ctx: Context) -> list[str]:
    lines = [f".SS {escape(ctx.info_name or '')}", *usage(command, ctx)]
    lines += render_blocks(help_blocks(command.help))
    params = command_params(command, ctx, with_help=False)
    lines += params_section(params, ctx, "argument", ".PP\n.B Arguments:")
    lines += params_section(params, ctx, "option", ".PP\n.B Options:")
    lines += render_blocks(help_blocks(command.epilog))
    return lines


def mechanism_page(cli: Cli, name: str) -> str:
    group = cli.root.get_command(cli.root_ctx, name)
    if not isinstance(group, TyperGroup):
        raise SystemExit(f"gendocs: mechanism {name!r} is not a group of verbs")
    ctx = context(group, name, cli.root_ctx)
    verbs: list[tuple[str, Command]] = []
    for verb in group.list_commands(ctx):
        command = group.get_command(ctx, verb)
        if isinstance(command, TyperCommand | TyperGroup) and not command.hidden:
            verbs.append((verb, command))
    page = f"{PROG}-{name}"
    lines = cli.header(page, summary(cli.mechanisms[name][1]))
    lines.append(".SH SYNOPSIS")
    for verb, command in verbs:
        lines += [*usage(command, context(command, verb, ctx)), ".br"]
    lines.pop()
    lines += [".SH DESCRIPTION", *render_blocks(help_blocks(group.help))]
    lines += render_blocks(help_blocks(group.epilog))
    lines += params_section(
        command_params(group, ctx, with_help=True), ctx, "option", ".SH OPTIONS"
    )
    lines.append(".SH COMMANDS")
    for verb, command in verbs:
        lines += verb_section(command, context(command, verb, ctx))
    lines += exit_status()
    lines += see_also([PROG])
    return "\n".join(lines) + "\n"


def tool_page(cli: Cli, name: str) -> str:
    command = cli.tools[name]
    ctx = context(command, name, cli.root_ctx)
    page = f"{PROG}-{name}"
    lines = cli.header(page, summary(command.help))
    lines += [".SH SYNOPSIS", *usage(command, ctx)]
    lines += [".SH DESCRIPTION", *render_blocks(help_blocks(command.help))]
    params = command_params(command, ctx, with_help=True)
    lines += params_section(params, ctx, "argument", ".SH ARGUMENTS")
    lines += params_section(params, ctx, "option", ".SH OPTIONS")
    lines += render_blocks(help_blocks(command.epilog))
    lines += exit_status()
    lines += see_also([PROG])
    return "\n".join(lines) + "\n"


def man_files(cli: Cli) -> dict[str, str]:
    """The distribution's pages: path relative to its tree -> content. The project's
    include ipctool(1) and the built-in commands' pages."""
    files = {f"man/{PROG}.1": main_page(cli)} if cli.distribution == PROJECT else {}
    for name in cli.mechanisms:
        files[f"man/{PROG}-{name}.1"] = mechanism_page(cli, name)
    for name in cli.tools:
        files[f"man/{PROG}-{name}.1"] = tool_page(cli, name)
    return files
