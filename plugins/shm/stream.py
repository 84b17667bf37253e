"""--stream: send and recv through a segment used as a ring (ring.py's layout).

Either side may come first: it creates the segment (--size, default 4 MiB) if
there is none, and the other joins it. The receiver removes the segment at the
end of the stream, and a side that stops early (an error, a vanished peer,
Ctrl-C, --timeout) removes it too, so a ring never outlives its stream unless
--keep; a segment some other program made (ipcmk, a C peer) is never removed.
The sender ends once its last byte is in the ring, as a pipe's writer does: a
receiver that comes later still reads it all.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ipctool.api import IpcTarget, announce_ready
from ipctool_plugins.shm import ring
from ipctool_plugins.shm.ring import DONE, STOPPED, Ring

if TYPE_CHECKING:
    from ipctool_plugins.shm import segments


class Mapped(Protocol):
    """What a stream side needs of the memory under its ring (a shm segment, a
    mapped file): run_side works on any, so the mmap plugin runs it over a file."""

    def close(self) -> None: ...

    def remove(self) -> None: ...

    def still_there(self) -> bool: ...

DEFAULT_SIZE = 4 << 20
SIZING_WAIT = 2.0  # seconds a peer may take between shm_open and ftruncate
F_SETPIPE_SZ = 1031


def open_ring(where: IpcTarget, size: int | None, mode: int) -> tuple[Mapped, Ring]:
    segment = sized_segment(where, size or DEFAULT_SIZE, mode)
    try:
        segment.reserve(0, segment.size)  # one a C program sized sparse
        return segment, Ring(segment.view, segment.address, where.label, segment.created)
    except BaseException:
        if segment.created:
            segment.remove()
        segment.close()
        raise


def sized_segment(where: IpcTarget, size: int, mode: int) -> segments.Segment:
    """The segment, once it has a size: a POSIX object is made by shm_open and then
    sized by ftruncate, and the other end may find it in between (size 0). A SysV
    segment has its size from the start."""
    from ipctool.api import Timeout, retry_until
    from ipctool_plugins.shm import segments

    def attempt() -> segments.Segment | None:
        segment = segments.open_or_create(where, size, mode)
        if segment.size or segment.created:
            return segment
        segment.close()
        return None

    try:
        return retry_until(attempt, timeout=SIZING_WAIT, obj=where.label)
    except Timeout:  # no peer is sizing it: an empty object, which Ring refuses
        return segments.open_or_create(where, size, mode)


def grow_pipe(fd: int) -> None:
    """A pipe's reads and writes move at most its size: make it as big as allowed."""
    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        with open("/proc/sys/fs/pipe-max-size") as f:
            fcntl.fcntl(fd, F_SETPIPE_SZ, min(int(f.read()), ring.CHUNK))
    except (OSError, ValueError):
        pass  # a smaller pipe only means smaller steps


def run_side(
    label: str,
    opener: Callable[[], tuple[Mapped, Ring]],
    timeout: float | None,
    keep: bool,
    ready_fd: int | None,
    sending: bool,
) -> None:
    """One side of a stream over the ring `opener` maps (creating its memory if
    missing: then the ring's made_for_stream is set, and only then is it removed)."""
    from ipctool.api import interrupts_deferred, require_stdio

    fd = 0 if sending else 1
    require_stdio(fd)  # closed, or a directory as stdin: before anything is made
    segment = the_ring = None
    claimed = False
    state = STOPPED
    try:
        # Signals are held while the memory is made and the role taken: one that
        # lands in between (a new file linked in but not yet mapped) is acted on
        # once this finally is armed, which removes what was made.
        with interrupts_deferred():
            segment, the_ring = opener()
            the_ring.still_there = segment.still_there
            the_ring.claim(sending)  # refused: another stream's ring, left as it is
            claimed = True
        announce_ready(label, ready_fd)
        grow_pipe(fd)
        if sending:
            the_ring.send_from(fd, timeout)
        else:
            the_ring.receive_to(fd, timeout)
        state = DONE
    finally:
        if the_ring is not None and segment is not None:
            close_side(segment, the_ring, claimed, state, keep, sending)


def close_side(
    segment: Mapped, the_ring: Ring, claimed: bool, state: int, keep: bool, sending: bool
) -> None:
    """Say how this side ended and remove the memory where the stream owns it."""
    ours = False
    try:
        if claimed:
            the_ring.finish(sending, state)
            ours = the_ring.made_for_stream
    finally:
        the_ring.release()
    if ours and not keep and (state == STOPPED or not sending):
        segment.remove()
    segment.close()


def stream_send(
    where: IpcTarget,
    size: int | None,
    mode: int,
    timeout: float | None,
    keep: bool,
    ready_fd: int | None,
) -> None:
    opener = lambda: open_ring(where, size, mode)  # noqa: E731
    run_side(where.label, opener, timeout, keep, ready_fd, sending=True)


def stream_recv(
    where: IpcTarget,
    size: int | None,
    mode: int,
    timeout: float | None,
    keep: bool,
    ready_fd: int | None,
) -> None:
    opener = lambda: open_ring(where, size, mode)  # noqa: E731
    run_side(where.label, opener, timeout, keep, ready_fd, sending=False)
