"""Where the file-backed objects of several mechanisms (FIFOs, socket files,
mapped files) are looked for when no directory is named."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

# The directories anyone may leave such files in, and the user's runtime dir.
SCRATCH_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def scratch_dirs(candidates: tuple[str, ...] = SCRATCH_DIRS) -> list[str]:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return [d for d in (*candidates, runtime) if d and os.path.isdir(d)]


def files_of_kind(directory: str, is_kind: Callable[[int], bool]) -> list[str]:
    """The entries directly in the directory whose mode passes `is_kind`
    (stat.S_ISFIFO, S_ISSOCK...), sorted; links are not followed, and an entry
    that vanishes while it is looked at is left out."""
    try:
        entries = list(os.scandir(directory))
    except OSError as err:
        from ipctool.errors import from_os_error

        raise from_os_error(directory, err) from None
    found = []
    for entry in entries:
        with contextlib.suppress(OSError):
            if is_kind(entry.stat(follow_symlinks=False).st_mode):
                found.append(entry.path)
    return sorted(found)
