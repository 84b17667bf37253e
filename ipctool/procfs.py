"""One walk of /proc per command, shared by every plugin's questions.

"Who holds this FIFO open, who maps this file, who owns this socket inode, who
is blocked in msgrcv on queue 7": each answer needs a look at every process.
`ProcView` walks each part of /proc (fds, maps, syscalls) at most once, on the
first question that needs it, and answers the rest from an index. Processes we
may not look into (another user's, without root) are passed over.
"""

from __future__ import annotations

import os
import stat
from collections import defaultdict
from collections.abc import Callable
from functools import cached_property

O_ACCMODE = 0o3
ACCESS = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}


class Holder:
    """One open descriptor of one process on a file, FIFO or socket."""

    __slots__ = ("fd", "pid")

    def __init__(self, pid: int, fd: int) -> None:
        self.pid = pid
        self.fd = fd

    @property
    def access(self) -> str:
        """'r', 'w' or 'rw', from /proc/PID/fdinfo ('' when it is gone)."""
        try:
            with open(f"/proc/{self.pid}/fdinfo/{self.fd}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        return ACCESS.get(int(line.split()[1], 8) & O_ACCMODE, "")
        except (OSError, ValueError, IndexError):
            pass
        return ""

    def __repr__(self) -> str:
        return f"Holder(pid={self.pid}, fd={self.fd})"


class ProcView:
    """What every process has open, mapped and is blocked in, read lazily once."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self.me = os.getpid()

    @cached_property
    def pids(self) -> list[int]:
        return sorted(int(e) for e in os.listdir(self.root) if e.isdigit())

    def command(self, pid: int) -> str:
        """The process's name (comm), or '?' when it is gone."""
        try:
            with open(f"{self.root}/{pid}/comm") as f:
                return f.read().strip()
        except OSError:
            return "?"

    @cached_property
    def _open_files(self) -> dict[tuple[int, int], list[Holder]]:
        """(st_dev, st_ino) -> every descriptor open on it, in every process."""
        index: dict[tuple[int, int], list[Holder]] = defaultdict(list)
        types = self._file_types
        for pid in self.pids:
            if pid == self.me:
                continue
            fd_dir = f"{self.root}/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            for fd in fds:
                try:
                    st = os.stat(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                index[(st.st_dev, st.st_ino)].append(Holder(pid, int(fd)))
                types[(st.st_dev, st.st_ino)] = stat.S_IFMT(st.st_mode)
        return index

    @cached_property
    def _file_types(self) -> dict[tuple[int, int], int]:
        return {}  # filled by the walk of _open_files

    def open_files_of_type(self, file_type: int) -> dict[tuple[int, int], list[Holder]]:
        """Every open file of one type (stat.S_IFIFO, S_IFSOCK...) and its holders."""
        index = self._open_files
        return {k: v for k, v in index.items() if self._file_types.get(k) == file_type}

    def path_of(self, holder: Holder) -> str:
        """What the holder's descriptor points at ('' when it is gone)."""
        try:
            return os.readlink(f"{self.root}/{holder.pid}/fd/{holder.fd}")
        except OSError:
            return ""

    def holders(self, device: int, inode: int) -> list[Holder]:
        """Descriptors other processes have open on this file, FIFO or socket."""
        return self._open_files.get((device, inode), [])

    def holder_pids(self, device: int, inode: int) -> list[int]:
        return sorted({h.pid for h in self.holders(device, inode)})

    @cached_property
    def _mapped_files(self) -> dict[tuple[int, int], set[int]]:
        """(major:minor as st_dev, inode) -> pids that map that file."""
        index: dict[tuple[int, int], set[int]] = defaultdict(set)
        for pid in self.pids:
            if pid == self.me:
                continue
            try:
                with open(f"{self.root}/{pid}/maps") as f:
                    lines = f.readlines()
            except OSError:
                continue
            for line in lines:
                fields = line.split(maxsplit=5)
                if len(fields) < 5 or fields[4] == "0":
                    continue
                major, _, minor = fields[3].partition(":")
                device = os.makedev(int(major, 16), int(minor, 16))
                index[(device, int(fields[4]))].add(pid)
        return index

    def mapping_pids(self, device: int, inode: int) -> list[int]:
        """Processes that have this file (or shm object) mapped into memory."""
        return sorted(self._mapped_files.get((device, inode), ()))

    @cached_property
    def _blocked(self) -> dict[int, list[tuple[list[int], int]]]:
        """System call number -> (its arguments, pid) of every thread blocked in it."""
        index: dict[int, list[tuple[list[int], int]]] = defaultdict(list)
        for pid in self.pids:
            if pid == self.me:
                continue
            try:
                threads = os.listdir(f"{self.root}/{pid}/task")
            except OSError:
                continue
            for thread in threads:
                try:
                    with open(f"{self.root}/{pid}/task/{thread}/syscall") as f:
                        fields = f.read().split()
                except OSError:
                    continue
                if len(fields) > 3 and fields[0].isdigit():  # "running" otherwise
                    arguments = [int(field, 16) for field in fields[1:7]]
                    index[int(fields[0])].append((arguments, pid))
        return index

    def blocked_pids(self, calls: set[int], first_argument: int) -> list[int]:
        """Processes with a thread blocked right now in one of these system calls
        with this first argument (e.g. msgrcv on a queue id)."""
        return self.blocked_matching(calls, lambda args: args[0] == first_argument)

    def blocked_matching(self, calls: set[int], match: Callable[[list[int]], bool]) -> list[int]:
        """Processes blocked in one of these calls whose arguments `match` accepts."""
        found = {pid for call in calls for args, pid in self._blocked.get(call, ()) if match(args)}
        return sorted(found)


_shared: ProcView | None = None


def proc_view() -> ProcView:
    """The view of the running command: every plugin asks the same one."""
    global _shared
    if _shared is None:
        _shared = ProcView()
    return _shared
