"""The generic `inspect` and `clean` verbs, built for any mechanism from its ObjectSource.

Every safety rule of clean is here, once: nothing in use and nothing of
another user's goes without --force; a user who could not remove an object at
all gets "permission denied" (exit 4, --force cannot help); --dry-run touches
nothing; a refused TARGET exits 6.

No `from __future__ import annotations`: typer reads these signatures.
"""

import importlib
import inspect as pyinspect
import os
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.models import CommandInfo

from ipctool.errors import IpcError, NotFound, PermissionDenied, Refused, UsageError
from ipctool.objects import DEFAULT_STALE_AGE, IpcObject, ObjectSource, format_age
from ipctool.options import DryRun, Force, Json, OlderThan, Stale

IdOption = Annotated[
    int | None,
    typer.Option("--id", metavar="ID", min=0, help="A SysV object by the id ipcs shows."),
]
ShowLimits = Annotated[bool, typer.Option("--limits", help="Show the kernel's limits instead.")]


def load_source(reference: str) -> ObjectSource:
    """'pkg.mod:Class' -> an instance; imported only by the verbs that need it."""
    module_name, _, attribute = reference.partition(":")
    source = getattr(importlib.import_module(module_name), attribute)
    return source() if isinstance(source, type) else source


def target_of(source: ObjectSource, target: str | None, object_id: int | None) -> str | None:
    """The one target string: TARGET, or `--id N` written as the target `--id=N`."""
    if object_id is None:
        return target
    if target is not None:
        raise UsageError(target, f"give a {source.target_metavar} or --id, not both")
    return f"--id={object_id}"


def record(source: ObjectSource, obj: IpcObject) -> dict[str, Any]:
    return obj.to_json(stale=source.stale(obj, DEFAULT_STALE_AGE))


def show_limits(source: ObjectSource, as_json: bool) -> None:
    from ipctool.output import print_json, print_table

    values = source.limits()
    if as_json:
        print_json(values)
        return
    rows: list[tuple[Any, ...]] = []
    for name, value in values.items():
        if isinstance(value, dict):
            rows += [(name, k, v) for k, v in value.items()]
        else:
            rows.append(("", name, value))
    print_table(f"{source.mechanism} limits", ["group", "limit", "value"], rows)


def cell(value: Any) -> Any:
    """A JSON value as a table cell: lists space-separated, processes as pid(command)."""
    if isinstance(value, list):
        return " ".join(str(cell(item)) for item in value) or "-"
    if isinstance(value, dict) and "pid" in value:
        return f"{value['pid']}({value.get('command', '?')})"
    return value


def run_inspect(source: ObjectSource, target: str | None, limits: bool, as_json: bool) -> None:
    from ipctool.output import print_json, print_table
    from ipctool.procfs import proc_view
    from ipctool.registry import warn

    if limits:
        if target is not None:
            raise UsageError(target, "--limits shows the system's limits; drop the target")
        show_limits(source, as_json)
        return
    proc = proc_view()
    if target is not None and not source.is_scope(target):
        one = record(source, source.find(target, proc))
        if as_json:
            print_json(one)
        else:
            rows: list[list[Any]] = [[key, cell(value)] for key, value in one.items()]
            print_table(f"{source.mechanism} {one['target']}", ["field", "value"], rows)
        return
    records = [record(source, obj) for obj in source.objects(proc, scope=target)]
    for note in source.notes():
        warn(f"{source.mechanism}: {note}")
    if as_json:
        print_json(records)
        return
    headers = [header for header, _ in source.columns]
    table = [[cell(r.get(key)) for _, key in source.columns] for r in records]
    print_table(f"{source.mechanism}: {source.noun}s", headers, table)


def refusal(obj: IpcObject, force: bool) -> str | None:
    """Why clean leaves the object alone: in use or another user's, unless --force."""
    if force:
        return None
    busy = obj.in_use
    if busy:
        return busy
    if obj.uid is not None and obj.uid != os.geteuid():
        return f"owned by {obj.owner}"
    return None


def clean_named(source: ObjectSource, obj: IpcObject, *, force: bool, dry_run: bool) -> str:
    """`clean TARGET`: every reason not to is an error with its own exit code."""
    if not obj.removable:
        raise PermissionDenied(obj.target, source.unremovable(obj))
    reason = refusal(obj, force)
    if reason:
        forceable = source.force_removes_in_use or not obj.in_use
        raise Refused(obj.target, f"{reason}; --force removes it anyway" if forceable else reason)
    if not dry_run:
        source.remove(obj)
    return "would remove" if dry_run else "removed"


def clean_stale(
    source: ObjectSource, obj: IpcObject, age: float, *, force: bool, dry_run: bool
) -> tuple[str, str | None]:
    """`clean --stale`: (action, reason). Only a stale object goes (the rule inspect's
    `stale` shows); --force lets another user's go too, never one in use."""
    from ipctool.procfs import ProcView

    if not source.stale(obj, age):
        return "skipped", obj.stale_reason
    if not obj.removable:
        return "skipped", "not removable by this user"
    reason = refusal(obj, force)
    if reason:
        return "skipped", reason
    if dry_run:
        return "would remove", None
    try:  # look again, from a fresh /proc: a user may have come since the listing
        fresh = source.find(obj.target, ProcView())
        if not source.stale(fresh, age):
            return "skipped", fresh.stale_reason
        source.remove(fresh)
    except NotFound:
        return "gone", "removed by someone else meanwhile"
    except IpcError as err:  # go on with the others, and say so at the end
        return "failed", err.reason
    return "removed", None


def stale_candidates(source: ObjectSource, scope: str | None, age: float) -> list[IpcObject]:
    """Objects old enough to be looked at: stale ones, and idle ones in use (reported)."""
    from ipctool.procfs import proc_view
    from ipctool.registry import warn

    if scope is None and source.stale_needs_scope:
        warn(f"{source.mechanism}: clean --stale looks only in a directory you name; none named")
        return []
    if source.never_stale:
        warn(f"{source.mechanism}: nothing to clean: {source.never_stale}")
        return []
    found = [
        o
        for o in source.objects(proc_view(), scope=scope)
        if over_age(o, age) or source.stale(o, age)
    ]
    for note in source.notes():
        warn(f"{source.mechanism}: {note}")
    return found


def check_clean_args(
    source: ObjectSource, target: str | None, stale: bool, older_than: float | None
) -> str | None:
    """The scope of a --stale run (a place a target names), after the usage rules."""
    scope = target if target is not None and source.is_scope(target) else None
    if not stale and (target is None or scope is not None):
        where = f" ({scope} is a place to look in: add --stale)" if scope else ""
        raise UsageError(None, f"name one {source.noun} or use --stale{where}")
    if stale and target is not None and scope is None:
        raise UsageError(target, f"--stale looks at every {source.noun}; drop the target")
    if older_than is not None and not stale:
        raise UsageError(None, "--older-than goes with --stale")
    return scope


def run_clean(
    source: ObjectSource,
    target: str | None,
    *,
    stale: bool,
    older_than: float | None,
    force: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    from ipctool.output import print_json, printable, stdout_writer
    from ipctool.procfs import proc_view

    scope = check_clean_args(source, target, stale, older_than)
    out = stdout_writer()  # a closed stdout fails here, before anything is removed
    age = DEFAULT_STALE_AGE if older_than is None else older_than
    report = []
    if stale:
        candidates = stale_candidates(source, scope, age)
    else:
        candidates = [source.find(target, proc_view())]  # type: ignore[arg-type]
    for obj in candidates:
        if stale:
            action, reason = clean_stale(source, obj, age, force=force, dry_run=dry_run)
        else:
            action, reason = clean_named(source, obj, force=force, dry_run=dry_run), None
        entry = {
            "mechanism": source.mechanism,
            "target": obj.target,
            "kind": obj.kind,
            "id": obj.id,
            "action": action,
            "reason": reason,
        }
        entry.update({key: obj.extra.get(key) for key in source.report_keys})
        report.append(entry)
        if not as_json:
            owned = reason and reason.startswith("owned by")
            hint = " (--force removes it)" if owned else ""
            suffix = f": {reason}{hint}" if reason else ""
            out.write(printable(f"{action} {source.describe(obj)}{suffix}") + "\n")
    if as_json:
        print_json(report)
    failed = [e for e in report if e["action"] == "failed"]
    if failed:
        raise IpcError(None, f"{len(failed)} of {len(report)} could not be removed (see above)")


def over_age(obj: IpcObject, age: float) -> bool:
    return obj.idle_seconds is not None and obj.idle_seconds > age


def without(callback: Callable[..., Any], *names: str) -> Callable[..., Any]:
    """The callback as typer should see it: these parameters left out."""
    signature = pyinspect.signature(callback)
    kept = [p for n, p in signature.parameters.items() if n not in names]
    callback.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]
    return callback


def examples(mechanism: str, lines: list[str]) -> str:
    body = "\n".join(f"  ipctool {mechanism} {line}" for line in lines)
    return f"\b\nExamples:\n{body}"


def command(
    name: str, callback: Callable[..., Any], source: ObjectSource, text: str
) -> CommandInfo:
    """The verb as typer builds it; without --id where the mechanism has no ids."""
    chosen = callback if source.id_option else without(callback, "object_id")
    return CommandInfo(name=name, callback=chosen, help=text)


def inspect_command(mechanism: str, reference: str) -> CommandInfo:
    source = load_source(reference)
    Target = Annotated[  # the argument as this mechanism names its objects
        str | None, typer.Argument(metavar=f"[{source.target_metavar}]", help=source.target_help)
    ]

    def inspect(
        target: Target = None,
        object_id: IdOption = None,
        limits: ShowLimits = False,
        as_json: Json = False,
    ) -> None:
        run_inspect(source, target_of(source, target, object_id), limits, as_json)

    sample = getattr(source, "example_target", None)
    help_text = (
        f"Show every {source.noun}, one {source.noun}, or the kernel's limits.\n\n"
        "Each record says who uses the object now, how long it has been idle and whether "
        "clean --stale would take it (keys in the README, 'Object records').\n\n"
        + examples(
            mechanism,
            ["inspect", *([f"inspect {sample} --json"] if sample else []), "inspect --limits"],
        )
    )
    return command("inspect", inspect, source, help_text)


def clean_command(mechanism: str, reference: str) -> CommandInfo:
    source = load_source(reference)
    Target = Annotated[  # the argument as this mechanism names its objects
        str | None, typer.Argument(metavar=f"[{source.target_metavar}]", help=source.target_help)
    ]

    def clean(
        target: Target = None,
        object_id: IdOption = None,
        stale: Stale = False,
        older_than: OlderThan = None,
        force: Force = False,
        dry_run: DryRun = False,
        as_json: Json = False,
    ) -> None:
        run_clean(
            source,
            target_of(source, target, object_id),
            stale=stale,
            older_than=older_than,
            force=force,
            dry_run=dry_run,
            as_json=as_json,
        )

    sample = getattr(source, "example_target", None)
    rule = getattr(source, "stale_rule", "not in use")
    help_text = (
        f"Remove one {source.noun}, or every stale one with --stale.\n\n"
        f"Stale: idle for longer than --older-than (default {format_age(DEFAULT_STALE_AGE)}) "
        f"and {rule}. Objects in use or owned by another user are left alone unless "
        "--force; --dry-run shows what would go.\n\n"
        + examples(
            mechanism,
            [
                *([f"clean {sample}"] if sample else []),
                "clean --stale --older-than 2h --dry-run",
                "clean --stale --json",
            ],
        )
    )
    return command("clean", clean, source, help_text)


CORE_VERBS: dict[str, Callable[[str, str], CommandInfo]] = {
    "inspect": inspect_command,
    "clean": clean_command,
}
