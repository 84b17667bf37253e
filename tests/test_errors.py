"""The errno map and naming(): every OSError a plugin meets becomes one line and the
exit code README promises; our stdout closing stays apart from a peer closing."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ipctool.errors import ExitCode, IpcError, StdoutClosed, UsageError, from_os_error, naming

EXPECTED = {
    errno.ENOENT: ExitCode.NOT_FOUND,
    errno.ENXIO: ExitCode.NOT_FOUND,
    errno.ECONNREFUSED: ExitCode.NOT_FOUND,
    errno.ESRCH: ExitCode.NOT_FOUND,
    errno.EHOSTUNREACH: ExitCode.NOT_FOUND,
    errno.ENETUNREACH: ExitCode.NOT_FOUND,
    errno.ENETDOWN: ExitCode.NOT_FOUND,
    errno.EACCES: ExitCode.PERMISSION,
    errno.EPERM: ExitCode.PERMISSION,
    errno.EROFS: ExitCode.PERMISSION,
    errno.EISDIR: ExitCode.USAGE,
    errno.ENOTDIR: ExitCode.USAGE,
    errno.ELOOP: ExitCode.USAGE,
    errno.ENAMETOOLONG: ExitCode.USAGE,
    errno.EADDRNOTAVAIL: ExitCode.USAGE,
    errno.EPROTOTYPE: ExitCode.USAGE,
    errno.EADDRINUSE: ExitCode.REFUSED,
    errno.EBUSY: ExitCode.REFUSED,
    errno.EEXIST: ExitCode.REFUSED,
    errno.EAGAIN: ExitCode.WOULD_BLOCK,
    errno.ETIMEDOUT: ExitCode.TIMEOUT,
    errno.EMSGSIZE: ExitCode.TOO_LARGE,
    errno.EFBIG: ExitCode.TOO_LARGE,
    errno.EPIPE: ExitCode.FAILURE,
    errno.ECONNRESET: ExitCode.FAILURE,
    errno.ENOSPC: ExitCode.FAILURE,
    errno.EBADF: ExitCode.FAILURE,
}


@pytest.mark.parametrize("code", EXPECTED, ids=errno.errorcode.get)
def test_errno_map(code: int) -> None:
    mapped = from_os_error("/tmp/obj", OSError(code, os.strerror(code)))
    assert mapped.exit_code == EXPECTED[code]
    assert mapped.obj == "/tmp/obj"
    line = mapped.line("fifo")
    assert line.startswith("ipctool: fifo: /tmp/obj: ") and "\n" not in line
    assert line == line.rstrip() and mapped.reason[0].islower()


def test_readme_explains_every_mapped_errno() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    codes_by_name = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 3 and cells[1].isdigit():
            for name in re.findall(r"`(E[A-Z]+)`", cells[0]):
                codes_by_name[name] = int(cells[1])
    for code, exit_code in EXPECTED.items():
        name = errno.errorcode[code]
        if exit_code is ExitCode.FAILURE and code not in (errno.EPIPE, errno.ECONNRESET):
            continue  # plain failures need no row of their own
        assert codes_by_name.get(name) == exit_code.value, f"README on {name}"


def test_reason_can_be_replaced() -> None:
    mapped = from_os_error("/tmp/f", BrokenPipeError(errno.EPIPE, "Broken pipe"), "reader left")
    assert (mapped.reason, mapped.exit_code) == ("reader left", ExitCode.FAILURE)


def test_naming_names_the_object() -> None:
    with pytest.raises(IpcError) as caught, naming("/no/such"):
        os.open("/no/such/file", os.O_RDONLY)
    assert caught.value.line("fifo") == "ipctool: fifo: /no/such: no such file or directory"
    assert caught.value.exit_code == ExitCode.NOT_FOUND


def test_naming_reasons_per_errno() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        with (
            pytest.raises(IpcError) as caught,
            naming("/tmp/f", reasons={errno.EPIPE: "reader closed the FIFO"}),
        ):
            os.write(write_end, b"x")
    finally:
        os.close(write_end)
    assert caught.value.line("fifo") == "ipctool: fifo: /tmp/f: reader closed the FIFO"
    assert caught.value.exit_code == ExitCode.FAILURE


class LibraryError(Exception):
    pass


def test_naming_translates_library_errors() -> None:
    def translate(exc: Exception) -> BaseException | None:
        return UsageError("q", "library said no") if isinstance(exc, LibraryError) else None

    with pytest.raises(UsageError, match="library said no"), naming("q", translate=translate):
        raise LibraryError("x")
    with pytest.raises(ValueError), naming("q", translate=translate):
        raise ValueError("not the library's")  # left as it is: a bug stays visible
    with pytest.raises(IpcError) as caught, naming("q", translate=translate):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert caught.value.exit_code == ExitCode.NOT_FOUND


def test_naming_lets_stdout_and_ipc_errors_through() -> None:
    with pytest.raises(StdoutClosed), naming("q"):
        raise StdoutClosed(errno.EPIPE, "Broken pipe")
    original = UsageError("other", "x")
    with pytest.raises(UsageError) as caught, naming("q"):
        raise original
    assert caught.value is original
    with pytest.raises(KeyboardInterrupt), naming("q"):
        raise KeyboardInterrupt


PLUGIN = """
from ipctool.api import Mechanism, hookimpl

@hookimpl
def ipctool_mechanisms():
    return [Mechanism(name="pipes", summary="Test.", commands="pipes_cmds:app", family="Other")]
"""

COMMANDS = '''
import os
from ipctool.api import new_app

app = new_app(help="Test verbs.")

@app.command()
def send() -> None:
    """A peer's pipe breaks: an error line, not a quiet 141."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.write(write_end, b"x")

@app.command()
def recv() -> None:
    """Our stdout's reader is gone: quiet 141."""
    import sys, time
    while True:
        sys.stdout.write("y" * 65536)
        sys.stdout.flush()

@app.command()
def inspect() -> None:
    """Inspect."""

@app.command()
def clean() -> None:
    """Clean."""
'''


def test_peer_broken_pipe_is_an_error_stdout_is_quiet(tmp_path: Path) -> None:
    from test_plugins import make_distribution

    make_distribution(tmp_path, "ipctool-pipes", "pipes", "pipes_plug", PLUGIN)
    (tmp_path / "pipes_cmds.py").write_text(COMMANDS)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    peer = subprocess.run(
        [sys.executable, "-m", "ipctool", "pipes", "send"], capture_output=True, env=env
    )
    assert peer.returncode == 1, peer.stderr
    assert peer.stderr.decode() == "ipctool: pipes: the other end was closed\n"
    shell = f"{sys.executable} -m ipctool pipes recv | head -c 10 > /dev/null"
    ours = subprocess.run(
        ["bash", "-c", shell + "; echo ${PIPESTATUS[0]}"], capture_output=True, env=env
    )
    assert (ours.stdout, ours.stderr) == (b"141\n", b"")
