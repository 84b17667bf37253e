"""A third-party plugin's man pages: python -m ipctool.gendocs --distribution NAME
documents that distribution's mechanisms only, in its own tree, and --check finds
its stale pages without touching anyone else's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_plugins import good_plugin

ROOT = Path(__file__).resolve().parent.parent


def gendocs(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IPCTOOL_")}
    return subprocess.run(
        [sys.executable, "-m", "ipctool.gendocs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(site)},
        check=False,
    )


def groff(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not shutil.which("groff"):
        pytest.fail("groff is needed to render man pages (tests/run installs groff-base)")
    return subprocess.run(
        ["groff", "-man", *args, str(page)], capture_output=True, text=True, timeout=60, check=False
    )


def pages(tree: Path) -> set[str]:
    return {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}


def test_plugin_gets_a_page_per_mechanism(tmp_path: Path) -> None:
    site, tree = tmp_path / "site", tmp_path / "tree"
    site.mkdir()
    good_plugin(site, dist="ipctool-fake", name="fake")
    good_plugin(site, dist="ipctool-other", name="other")  # installed too, not documented
    made = gendocs(site, "--distribution", "ipctool_fake", "--root", str(tree))
    assert made.returncode == 0, made.stderr
    assert pages(tree) == {"man/ipctool-fake.1"}
    page = tree / "man" / "ipctool-fake.1"
    rendered = groff(page, "-ww", "-z")
    assert (rendered.returncode, rendered.stderr) == (0, ""), rendered.stderr
    text = groff(page, "-Tascii", "-P-cbou").stdout
    assert "ipctool-fake - a test mechanism" in text
    assert "ipctool-fake 1.0" in text  # the plugin's own distribution and version
    for verb in ("send", "recv", "inspect", "clean"):
        assert f"ipctool fake {verb} [OPTIONS]" in text, text
    assert "SEE ALSO\n       ipctool(1)" in text

    # Someone else's page in the same folder is left alone; a page of a mechanism
    # the plugin no longer has is stale, as is a page edited by hand.
    foreign = tree / "man" / "ipctool-msgq.1"
    shutil.copy(ROOT / "man" / "ipctool-msgq.1", foreign)
    gone = tree / "man" / "ipctool-gone.1"
    gone.write_text(page.read_text())
    page.write_text(page.read_text().replace("Receive.", "Receive!"))
    stale = gendocs(site, "--check", "--distribution", "ipctool-fake", "--root", str(tree))
    assert stale.returncode == 1
    assert "man/ipctool-fake.1: differs" in stale.stderr
    assert "man/ipctool-gone.1: no longer generated" in stale.stderr
    assert "ipctool-msgq" not in stale.stderr
    assert "--distribution ipctool-fake" in stale.stderr.splitlines()[-1]

    again = gendocs(site, "--distribution", "ipctool-fake", "--root", str(tree))
    assert again.returncode == 0, again.stderr
    assert pages(tree) == {"man/ipctool-fake.1", "man/ipctool-msgq.1"}
    assert foreign.read_bytes() == (ROOT / "man" / "ipctool-msgq.1").read_bytes()
    fresh = gendocs(site, "--check", "--distribution", "ipctool-fake", "--root", str(tree))
    assert fresh.returncode == 0, fresh.stderr


def test_distribution_without_mechanisms(tmp_path: Path) -> None:
    missing = gendocs(tmp_path, "--distribution", "ipctool-nosuch", "--root", str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr.strip() == "gendocs: no mechanism of 'ipctool-nosuch' is installed"
    assert not (tmp_path / "man").exists()
