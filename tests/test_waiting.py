"""The core's waits: on descriptors (wait_fd), for what cannot be polled (retry_until),
and in C calls (wait_for). Signals are sent to small drivers, never to the test run."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sysv_ipc
from conftest import wait_until_blocked

from ipctool.errors import Timeout
from ipctool.waiting import Deadline, retry_until, wait_fd, wait_fds

# --- in this process: what a wait returns -------------------------------------


def test_wait_fd_reports_readiness() -> None:
    read_end, write_end = os.pipe()
    try:
        assert wait_fd(write_end, select.POLLOUT, timeout=5, obj="pipe") & select.POLLOUT
        os.write(write_end, b"x")
        assert wait_fd(read_end, select.POLLIN, timeout=5, obj="pipe") & select.POLLIN
        assert wait_fds([(read_end, select.POLLIN), (write_end, 0)], timeout=5, obj="p")[0]
        os.close(write_end)
        os.read(read_end, 1)
        assert wait_fd(read_end, select.POLLIN, timeout=5, obj="pipe") & select.POLLHUP  # EOF
    finally:
        os.close(read_end)


def test_wait_fd_times_out_with_the_object_named() -> None:
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(Timeout) as caught:
            wait_fd(read_end, select.POLLIN, timeout=0.05, obj="/tmp/f")
        assert caught.value.line("fifo") == "ipctool: fifo: /tmp/f: timed out after 0.05 s"
    finally:
        os.close(read_end)
        os.close(write_end)


def test_wait_fd_on_a_closed_descriptor_is_ebadf() -> None:
    import resource

    closed = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1  # a number nothing reuses
    with pytest.raises(OSError):
        os.fstat(closed)
    with pytest.raises(OSError) as caught:
        wait_fd(closed, select.POLLIN, timeout=1, obj="pipe")
    assert caught.value.errno == errno.EBADF


def test_deadline_overall_and_idle() -> None:
    forever = Deadline(None)
    assert (forever.remaining(), forever.expired(), forever.poll_ms()) == (None, False, -1)
    gone = Deadline(0)
    assert gone.expired() and gone.remaining() == 0 and gone.poll_ms() == 0
    idle = Deadline(3600)
    assert not idle.expired() and 3599 < idle.remaining() <= 3600
    idle.at = 0  # long past: as if an hour went by without progress
    assert idle.expired()
    idle.restart()  # something moved
    assert not idle.expired()


def test_one_deadline_over_many_waits() -> None:
    read_end, write_end = os.pipe()
    deadline = Deadline(0.05)
    try:
        for _ in range(3):  # the first wait uses it up; the others fail at once
            with pytest.raises(Timeout):
                wait_fd(read_end, select.POLLIN, timeout=deadline, obj="pipe")
    finally:
        os.close(read_end)
        os.close(write_end)


def test_retry_until_a_fifo_reader_appears(tmp_path: Path) -> None:
    """A FIFO writer opened with O_NONBLOCK fails (ENXIO) until a reader exists."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    tried = threading.Event()
    attempts = []

    def open_writer() -> int:
        attempts.append(1)
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            tried.set()  # the reader comes only after a failed try
            raise

    readers = []
    opener = threading.Thread(
        target=lambda: tried.wait(10) and readers.append(os.open(fifo, os.O_RDONLY))
    )
    opener.start()
    writer = retry_until(open_writer, timeout=10, obj=str(fifo), retry_errnos={errno.ENXIO})
    opener.join()
    try:
        assert len(attempts) >= 2  # it did fail first, and was tried again
        os.write(writer, b"hi")
        assert os.read(readers[0], 2) == b"hi"
    finally:
        os.close(writer)
        os.close(readers[0])


def test_retry_until_times_out_and_passes_other_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def open_writer() -> int:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)

    with pytest.raises(Timeout):
        retry_until(open_writer, timeout=0.05, obj=str(fifo), retry_errnos={errno.ENXIO})
    with pytest.raises(FileNotFoundError):  # not a "not yet": fails at once
        retry_until(
            lambda: os.open(tmp_path / "none", os.O_WRONLY),
            timeout=10,
            obj="none",
            retry_errnos={errno.ENXIO},
        )


# --- drivers: Ctrl-C, a closed stdout, SIGALRM ---------------------------------

DRIVER = r"""
import os, select, signal, sys
from ipctool import interrupts
from ipctool.errors import StdoutClosed, Timeout
from ipctool.waiting import retry_until, wait_fd

mode, what = sys.argv[1:3]
read_end, write_end = os.pipe()  # nothing is ever written: waits last until ended


def wait():
    if what == "fd":
        wait_fd(read_end, select.POLLIN, timeout=None, obj="pipe", watch_stdout=True)
    elif what == "fd-timeout":
        wait_fd(read_end, select.POLLIN, timeout=600, obj="pipe", watch_stdout=True)
    else:
        retry_until(lambda: None, timeout=None, obj="x", watch_stdout=True)


try:
    if mode == "default":  # Python's own SIGINT handler
        wait()
    elif mode == "verb":
        with interrupts.verb_phase():
            wait()
    elif mode == "deferred":
        with interrupts.interrupts_deferred():
            wait()
    elif mode == "early":  # Ctrl-C lands before the wait starts, while deferred
        with interrupts.interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            wait()
except KeyboardInterrupt:
    sys.exit(130)
except StdoutClosed:
    sys.exit(141)
"""


def driver(*args: str, **popen: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, *args], stderr=subprocess.PIPE, **popen)


@pytest.mark.parametrize("what", ["fd", "retry"])
@pytest.mark.parametrize("mode", ["default", "verb", "deferred"])
def test_ctrl_c_ends_a_wait_in_every_mode(mode: str, what: str) -> None:
    proc = driver(mode, what, stdout=subprocess.DEVNULL)
    wait_until_blocked(proc.pid, ("poll", "ppoll"))
    proc.send_signal(signal.SIGINT)
    assert (proc.wait(timeout=10), proc.stderr.read()) == (130, b"")


def test_ctrl_c_just_before_the_wait_is_not_missed() -> None:
    proc = driver("early", "fd", stdout=subprocess.DEVNULL)
    assert (proc.wait(timeout=10), proc.stderr.read()) == (130, b"")


@pytest.mark.parametrize("what", ["fd", "retry"])
def test_closed_stdout_ends_a_wait(what: str) -> None:
    proc = driver("verb", what, stdout=subprocess.PIPE)
    wait_until_blocked(proc.pid, ("poll", "ppoll"))
    proc.stdout.close()  # the reader goes away while nothing is written
    assert (proc.wait(timeout=10), proc.stderr.read()) == (141, b"")


def test_wait_fd_needs_no_sigalrm() -> None:
    """While wait_fd waits with a timeout, SIGALRM is not caught: no timer, no handler."""
    proc = driver("verb", "fd-timeout", stdout=subprocess.DEVNULL)
    try:
        wait_until_blocked(proc.pid, ("poll", "ppoll"))
        status = Path(f"/proc/{proc.pid}/status").read_text()
        caught = int(
            next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16
        )
        assert not caught & (1 << (signal.SIGALRM - 1))
        assert caught & (1 << (signal.SIGINT - 1))
    finally:
        proc.kill()
        proc.wait()


WAIT_FOR = r"""
import signal, sys, sysv_ipc
from ipctool.errors import Timeout
from ipctool.waiting import wait_for

theirs = []
signal.signal(signal.SIGALRM, lambda *_: theirs.append(1))
signal.setitimer(signal.ITIMER_REAL, 600)  # someone else's alarm, far off
queue = sysv_ipc.MessageQueue(int(sys.argv[1], 16))
try:
    wait_for(lambda: queue.receive(True), timeout=0.05, obj="q", signaled=sysv_ipc.Error)
except Timeout:
    pass
left = signal.getitimer(signal.ITIMER_REAL)[0]
print(signal.getsignal(signal.SIGALRM).__name__, 500 < left <= 600, theirs)
"""


def test_wait_for_gives_sigalrm_back(sysv_key: str) -> None:
    """The C-call wait owns SIGALRM only while it waits: the previous handler and
    timer are back afterwards (so a signal mechanism can wait for ALRM)."""
    sysv_ipc.MessageQueue(int(sysv_key, 16), sysv_ipc.IPC_CREAT, 0o600)
    done = subprocess.run(
        [sys.executable, "-c", WAIT_FOR, sysv_key], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "<lambda> True []\n", "")
