"""python -m ipctool.gendocs: write the generated files into a tree, or check them."""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ipctool.gendocs
from ipctool.gendocs import PROG, PROJECT, generated_note
from ipctool.gendocs.completion import COMPLETIONS, completion_files
from ipctool.gendocs.man import Cli, man_files

SOURCE_TREE = Path(ipctool.gendocs.__file__).resolve().parents[2]


def generate(cli: Cli) -> dict[str, str]:
    """Every file generated for the distribution: path relative to its tree -> content."""
    files = man_files(cli)
    if cli.distribution == PROJECT:  # the scripts complete every plugin's: they are ipctool's
        files.update(completion_files())
    return files


def generated_on_disk(root: Path, distribution: str) -> Iterator[str]:
    """Files in root that an earlier run for the distribution wrote, known by their note."""
    note = generated_note(distribution)
    for path in sorted((root / "man").glob(f"{PROG}*.1")):
        with path.open(encoding="utf-8", errors="replace") as page:
            if note in page.readline():
                yield path.relative_to(root).as_posix()
    if distribution == PROJECT:
        for filename in COMPLETIONS:
            if (root / "completions" / filename).exists():
                yield f"completions/{filename}"


def write(root: Path, files: dict[str, str], distribution: str) -> None:
    for rel in set(generated_on_disk(root, distribution)) - set(files):
        (root / rel).unlink()  # a page of a mechanism or command that is gone
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8", newline="\n") as out:
            out.write(content)


def check(root: Path, files: dict[str, str], distribution: str) -> list[str]:
    """Regenerate into a temporary tree and compare: one message per stale file."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="ipctool-gendocs-") as tmp:
        write(Path(tmp), files, distribution)
        for rel in sorted(set(files) | set(generated_on_disk(root, distribution))):
            fresh, current = Path(tmp) / rel, root / rel
            if not fresh.exists():
                problems.append(f"{rel}: no longer generated; delete it")
            elif not current.exists():
                problems.append(f"{rel}: missing")
            elif fresh.read_bytes() != current.read_bytes():
                diff = difflib.unified_diff(
                    current.read_text(encoding="utf-8").splitlines(),
                    fresh.read_text(encoding="utf-8").splitlines(),
                    f"{rel} (on disk)",
                    f"{rel} (generated)",
                    lineterm="",
                )
                problems.append(f"{rel}: differs\n" + "\n".join(list(diff)[:40]))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ipctool.gendocs",
        description=ipctool.gendocs.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="Change nothing; exit 1 if a file is stale."
    )
    parser.add_argument(
        "--distribution",
        default=PROJECT,
        help="Document this installed distribution's mechanisms only: a plugin's "
        "man/ipctool-MECHANISM.1 pages (default: %(default)s, with ipctool(1) and completions).",
    )
    parser.add_argument(
        "--root",
        type=Path,
        help=f"Tree to hold man/ (and completions/): default {SOURCE_TREE} for "
        f"{PROJECT}, the current directory for another distribution.",
    )
    args = parser.parse_args(argv)
    cli = Cli.load(args.distribution)
    distribution = cli.distribution  # as its metadata spells it
    root: Path = args.root or (SOURCE_TREE if distribution == PROJECT else Path.cwd())
    files = generate(cli)
    if not args.check:
        write(root, files, distribution)
        print(f"gendocs: wrote {len(files)} files under {root}")
        return 0
    problems = check(root, files, distribution)
    for problem in problems:
        print(f"gendocs: {problem}", file=sys.stderr)
    if problems:
        again = ["python", "-m", "ipctool.gendocs"]
        if distribution != PROJECT:
            again += ["--distribution", distribution]
        if args.root:
            again += ["--root", str(args.root)]
        print(f"gendocs: run `{shlex.join(again)}` and commit the result", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
