"""ipctool/_click.py against the installed typer: every private name it takes still
exists, has the call shape ipctool uses, and is still what typer itself calls.

When typer moves or renames one of them, these tests fail naming it; mend
ipctool/_click.py (and only it), then this list.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import subprocess
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import typer

# (module, attribute) for every private typer/click name ipctool/_click.py uses.
PRIVATE_NAMES = [
    ("typer._click", "Command"),
    ("typer._click", "Context"),
    ("typer._click", "HelpFormatter"),
    ("typer._click", "Parameter"),
    ("typer._click.exceptions", "ClickException"),
    ("typer._click.exceptions", "NoArgsIsHelpError"),
    ("typer._click.exceptions", "UsageError"),
    ("typer._click.shell_completion", "CompletionItem"),
    ("typer._click.shell_completion", "get_completion_class"),
    ("typer.core", "TyperArgument"),
    ("typer.core", "TyperCommand"),
    ("typer.core", "TyperGroup"),
    ("typer.core", "TyperOption"),
    ("typer.models", "CommandInfo"),
    ("typer.main", "get_command"),
    ("typer.main", "get_group"),
    ("typer.main", "get_command_name"),
    ("typer._completion_classes", "completion_init"),
    ("typer._completion_classes", "_sanitize_help_text"),
    ("typer._completion_shared", "get_completion_script"),
]

TYPER = f"typer {typer.__version__}"


def resolve(module: str, attribute: str) -> Any:
    return getattr(importlib.import_module(module), attribute)


def test_every_private_name_exists() -> None:
    missing = []
    for module, attribute in PRIVATE_NAMES:
        try:
            resolve(module, attribute)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{module}.{attribute} ({exc})")
    assert not missing, f"{TYPER} no longer has: " + "; ".join(missing)


def typer_name(module: str, attribute: str) -> Any:
    try:
        return resolve(module, attribute)
    except (ImportError, AttributeError):
        pytest.fail(f"{TYPER} no longer has {module}.{attribute}")


def accepts(function: Callable[..., Any], *args: Any, **kwargs: Any) -> str | None:
    """None if a call of this shape binds to the function's signature, else why not."""
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except TypeError as exc:
        shape = ", ".join([*map(repr, args), *(f"{k}=..." for k in kwargs)])
        return f"{function.__qualname__}{inspect.signature(function)} rejects ({shape}): {exc}"
    return None


def test_call_shapes() -> None:
    """Each private callable still takes the arguments ipctool passes it."""
    core, main = "typer.core", "typer.main"
    group_cls = typer_name(core, "TyperGroup")
    command_cls = typer_name("typer._click", "Command")
    parameter_cls = typer_name("typer._click", "Parameter")
    ctx, app = object(), object()
    problems = [
        accepts(typer_name(main, "get_command"), app),
        accepts(typer_name(main, "get_group"), app),
        accepts(typer_name(main, "get_command_name"), "send"),
        accepts(typer_name("typer._completion_classes", "completion_init")),
        accepts(typer_name("typer._completion_classes", "_sanitize_help_text"), "text"),
        accepts(
            typer_name("typer._completion_shared", "get_completion_script"),
            prog_name="ipctool",
            complete_var="_IPCTOOL_COMPLETE",
            shell="bash",
        ),
        # cli.VerbGroup's constructor call
        accepts(
            group_cls,
            name="msgq",
            help="h",
            epilog="e",
            no_args_is_help=True,
            subcommand_metavar="VERB",
            rich_markup_mode=None,
            context_settings={},
        ),
        accepts(group_cls._main_shell_completion, group_cls, {}, "ipctool", "_IPCTOOL_COMPLETE"),
        accepts(command_cls.shell_complete, group_cls, ctx, "--t"),
        accepts(
            typer_name("typer._click", "Context"),
            command_cls,
            parent=None,
            info_name="ipctool",
            help_option_names=["-h", "--help"],
        ),
        accepts(typer_name("typer._click.shell_completion", "CompletionItem"), "msgq", help="h"),
        # what the man page generator asks of every parameter
        accepts(parameter_cls.make_metavar, parameter_cls, ctx),
        accepts(parameter_cls.get_default, parameter_cls, ctx, call=False),
        accepts(command_cls.collect_usage_pieces, command_cls, ctx),
        accepts(command_cls.get_help_option, command_cls, ctx),
        accepts(command_cls.get_params, command_cls, ctx),
    ]
    problems = [p for p in problems if p]
    assert not problems, f"{TYPER}: " + "\n".join(problems)


def test_command_info_fields() -> None:
    """A typer app's registered commands and info carry what _click.py reads."""
    from ipctool._click import app_texts, command_infos

    app = typer.Typer(help="Group help.", epilog="Group epilog.")

    @app.command()
    def send_all() -> None:
        pass

    @app.command("recv")
    def receive() -> None:
        pass

    assert list(command_infos(app)) == ["send-all", "recv"], TYPER
    assert app_texts(app) == ("Group help.", "Group epilog."), TYPER
    assert app_texts(typer.Typer()) == (None, None), f"{TYPER}: placeholders changed"


def test_typer_builds_the_bundled_clicks_classes() -> None:
    """The classes _click.py exports are the ones typer builds and raises, so cli's
    isinstance checks and except clauses catch what really happens."""
    from ipctool import _click as compat
    from ipctool import runner
    from ipctool.cli import MechanismGroup, VerbGroup, app

    root = compat.click_command(app)
    assert type(root) is MechanismGroup, f"{TYPER}: typer.main.get_command ignored cls="
    assert isinstance(root, compat.LazyCompletionGroup)
    assert isinstance(root, compat.Command)
    ctx = root.make_context("ipctool", ["plugins"], resilient_parsing=True)
    assert isinstance(ctx, compat.Context), type(ctx).__mro__
    group = root.get_command(ctx, "msgq")
    assert isinstance(group, VerbGroup)
    send = compat.build_command(group.verbs["send"], runner.APP_SETTINGS)
    assert isinstance(send, compat.TyperCommand), type(send).__mro__
    params = send.get_params(compat.Context(send, info_name="send"))
    assert params and all(
        isinstance(p, compat.TyperOption | compat.TyperArgument) for p in params
    ), [type(p) for p in params]
    with pytest.raises(compat.NoArgsIsHelpError):
        root.main([], prog_name="ipctool", standalone_mode=False)
    with pytest.raises(compat.UsageError) as unknown:
        root.main(["nosuch"], prog_name="ipctool", standalone_mode=False)
    assert isinstance(unknown.value, compat.ClickException)


class Called(Exception):
    pass


def test_tab_runs_main_shell_completion() -> None:
    """typer's main() hands every call to _main_shell_completion first: that is where
    LazyCompletionGroup loads the shells' completion support."""
    from ipctool import _click as compat

    calls: list[tuple[Any, ...]] = []

    class Spy(compat.LazyCompletionGroup):
        def _main_shell_completion(
            self,
            ctx_args: MutableMapping[str, Any],
            prog_name: str,
            complete_var: str | None = None,
        ) -> None:
            calls.append((dict(ctx_args), prog_name, complete_var))
            raise Called

    app = typer.Typer(cls=Spy, add_completion=False)

    @app.command()
    def verb() -> None:
        pass

    @app.command()
    def other() -> None:
        pass

    with contextlib.suppress(Called):  # stop where completion would answer and exit
        compat.click_command(app).main(["verb"], prog_name="ipctool", standalone_mode=False)
    assert calls == [({}, "ipctool", None)], (
        f"{TYPER}: main() no longer calls _main_shell_completion as before: {calls}"
    )


def test_shells_are_registered_with_plain_help(monkeypatch: pytest.MonkeyPatch) -> None:
    from ipctool import _click as compat
    from ipctool.cli import app

    classes = importlib.import_module("typer._completion_classes")
    monkeypatch.setattr(classes, "_sanitize_help_text", classes._sanitize_help_text)
    get_completion_class = resolve("typer._click.shell_completion", "get_completion_class")
    compat.enable_shell_completion()
    marked_up = compat.CompletionItem("x", help="[bold]y[/bold]")
    for shell in ("bash", "zsh", "fish"):
        completer = get_completion_class(shell)
        assert completer is not None, f"{TYPER}: completion_init no longer registers {shell}"
        if shell != "bash":  # bash shows no help texts
            line = completer(compat.click_command(app), {}, "ipctool", compat.COMPLETE_VAR)
            # rich would render the markup away: the plain sanitizer is not the one used
            assert "[bold]y[/bold]" in line.format_completion(marked_up), (
                f"{TYPER}: {shell} help no longer goes through _sanitize_help_text"
            )


def test_completion_scripts() -> None:
    from ipctool._click import completion_script

    for shell in ("bash", "zsh", "fish"):
        script = completion_script(shell, "ipctool")
        assert "_IPCTOOL_COMPLETE" in script and "ipctool" in script, (TYPER, shell, script)
    # ipctool/gendocs/completion.py rewrites this line for a zsh script that is autoloaded
    assert completion_script("zsh", "ipctool").endswith("compdef _ipctool_completion ipctool")


MODULES_AT_EXIT = """
import atexit, json, sys
report = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(report, "w")))
from ipctool.cli import main
main()
"""


def modules_after(tmp_path: Path, *args: str, **env: str) -> tuple[set[str], bytes]:
    """Every module ipctool had imported when it exited, and its stdout."""
    report = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", MODULES_AT_EXIT, str(report), *args],
        capture_output=True,
        env={**os.environ, **env},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(report.read_text())), done.stdout


def test_help_loads_no_docs_code(tmp_path: Path) -> None:
    modules, _ = modules_after(tmp_path, "--help")
    assert not {m for m in modules if m.startswith("ipctool.gendocs")}, modules


def test_tab_does_not_load_rich(tmp_path: Path) -> None:
    env = {"_IPCTOOL_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "ipctool msgq send --ti"}
    modules, offered = modules_after(tmp_path, **env)
    assert b"--timeout" in offered  # the TAB was answered
    assert "rich" not in modules
