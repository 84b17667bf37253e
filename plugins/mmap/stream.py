"""--stream over a file: shm's ring (ring.py) and its sides (stream.py), in a file
mapped MAP_SHARED, which is the same shared memory to every process that maps it.

Either side may come first and creates the file (--size, default 4 MiB; it
appears whole, sized, so the other side never finds it empty). The receiver
removes it at the end of the stream, and a side that stops early removes it
too, unless --keep; a file ipctool did not create (all zeros, made by another
program) carries a stream and stays. Its blocks are reserved before the ring is
touched: sparse, on a full filesystem, its holes would be SIGBUS, not exit 7.
"""

from __future__ import annotations

from ipctool_plugins.mmap import files
from ipctool_plugins.shm.ring import Ring
from ipctool_plugins.shm.stream import DEFAULT_SIZE, run_side


def open_ring(path: str, size: int | None, mode: int) -> tuple[files.MappedFile, Ring]:
    mapped = files.open_or_create(path, size or DEFAULT_SIZE, mode)
    try:
        if mapped.size == 0:
            from ipctool.api import UsageError

            raise UsageError(path, "is an empty file: a stream needs a ring (--size for new ones)")
        if not mapped.created:  # one another program sized sparse (truncate): blocks first
            mapped.reserve(0, mapped.size)
        return mapped, Ring(mapped.view, mapped.address, path, mapped.created, "mmap")
    except BaseException:
        if mapped.created:
            mapped.remove()
        mapped.close()
        raise


def stream_side(
    path: str,
    size: int | None,
    mode: int,
    timeout: float | None,
    keep: bool,
    ready_fd: int | None,
    sending: bool,
) -> None:
    run_side(path, lambda: open_ring(path, size, mode), timeout, keep, ready_fd, sending)
