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
import time
from collections import defaultdict
from collections.abc import Callable
from functools import cached_property

O_ACCMODE = 0o3
O_PATH = getattr(os, "O_PATH", 0o10000000)
ACCESS = {os.O_RDONLY: "r", os.O_WRONLY: "w", os.O_RDWR: "rw"}


# Pauses before looking again at threads seen out of a system call (see _blocked):
# 47 ms at most, spent only when some thread was out of one. On a busy machine a
# waiter a heartbeat took out of its wait may wait that long for a CPU.
RELOOKS = (0.002, 0.005, 0.01, 0.03)


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
                        flags = int(line.split()[1], 8)
                        if flags & O_PATH:  # a handle on the file, not open for I/O
                            return ""
                        return ACCESS.get(flags & O_ACCMODE, "")
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
                if len(fields) == 6 and fields[5].startswith("/SYSV"):
                    self._sysv_shm[int(fields[4])].add(pid)
                elif len(fields) == 6 and fields[1][1::2] == "ws":  # rw-s: shared, writable
                    path = fields[5].rstrip("\n")
                    self._shared_paths.setdefault((device, int(fields[4])), path)
        return index

    @cached_property
    def _sysv_shm(self) -> dict[int, set[int]]:
        return defaultdict(set)  # filled by the walk of _mapped_files

    @cached_property
    def _shared_paths(self) -> dict[tuple[int, int], str]:
        return {}  # filled by the walk of _mapped_files

    def shared_mappings(self) -> dict[tuple[int, int], str]:
        """(st_dev, inode) -> path of every file some process maps MAP_SHARED and
        writable (a read-only shared mapping, as glibc's gconv cache, only reads), as
        /proc/PID/maps names it (it may say "(deleted)", or name a path since reused)."""
        self._mapped_files  # noqa: B018 - the walk that fills the index
        return dict(self._shared_paths)

    def sysv_shm_pids(self, shmid: int) -> list[int]:
        """Processes that have the SysV segment with this id attached. Its mapping
        shows as /SYSV<key> with the id as the inode, on the kernel's internal
        shm mount (whose device number no path can stat)."""
        self._mapped_files  # noqa: B018 - the walk that fills the index
        return sorted(self._sysv_shm.get(shmid, ()))

    def mapping_pids(self, device: int, inode: int) -> list[int]:
        """Processes that have this file (or shm object) mapped into memory."""
        return sorted(self._mapped_files.get((device, inode), ()))

    @cached_property
    def _blocked(self) -> dict[int, list[tuple[list[int], int]]]:
        """System call number -> (its arguments, pid) of every thread blocked in it.

        A waiter is out of its wait for a moment now and then (a heartbeat
        interrupts a SysV wait every 0.1 s; on a busy machine it may then wait
        for a CPU for milliseconds). Threads seen out of a system call are looked
        at again a few times, RELOOKS apart, so that such a waiter still counts
        as a user: clean must never take it for an idle object."""
        index: dict[int, list[tuple[list[int], int]]] = defaultdict(list)
        outside: list[tuple[int, str]] = []
        for pid in self.pids:
            if pid == self.me:
                continue
            try:
                threads = os.listdir(f"{self.root}/{pid}/task")
            except OSError:
                continue
            for thread in threads:
                if not self._add_if_blocked(index, pid, thread):
                    outside.append((pid, thread))
        for pause in RELOOKS:
            if not outside:
                break
            time.sleep(pause)
            outside = [(p, t) for p, t in outside if not self._add_if_blocked(index, p, t)]
        return index

    def _add_if_blocked(
        self, index: dict[int, list[tuple[list[int], int]]], pid: int, thread: str
    ) -> bool:
        """Whether the thread is in a system call now (recorded), or gone."""
        try:
            with open(f"{self.root}/{pid}/task/{thread}/syscall") as f:
                fields = f.read().split()
        except OSError:
            return True  # gone: nothing to look at again
        if len(fields) > 3 and fields[0].isdigit():  # "running" or "-1 ..." otherwise
            index[int(fields[0])].append(([int(field, 16) for field in fields[1:7]], pid))
            return True
        return False

    def blocked_pids(self, calls: set[int], first_argument: int) -> list[int]:
        """Processes with a thread blocked right now in one of these system calls
        with this first argument (e.g. msgrcv on a queue id)."""
        return self.blocked_matching(calls, lambda args: args[0] == first_argument)

    def blocked_matching(self, calls: set[int], match: Callable[[list[int]], bool]) -> list[int]:
        """Processes blocked in one of these calls whose arguments `match` accepts."""
        found = {pid for call in calls for args, pid in self._blocked.get(call, ()) if match(args)}
        return sorted(found)


    @cached_property
    def _opening(self) -> dict[tuple[int, int], set[int]]:
        """(st_dev, st_ino) -> pids blocked opening that FIFO (waiting for a peer: a
        writer for a reader, or a reader for a writer), from the path their open
        call names (read from /proc/PID/mem: root, or the same user)."""
        index: dict[tuple[int, int], set[int]] = defaultdict(set)
        calls = OPEN_CALLS.get(os.uname().machine, {})
        for pid in self.pids:
            if pid == self.me or _wchan(self.root, pid) != "wait_for_partner":
                continue
            path = self._opened_path(pid, calls)
            if path is not None:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                index[(st.st_dev, st.st_ino)].add(pid)
        return index

    def _opened_path(self, pid: int, calls: dict[int, int]) -> str | None:
        try:
            with open(f"{self.root}/{pid}/syscall") as f:
                fields = f.read().split()
            number = int(fields[0])
            args = [int(a, 16) for a in fields[1:4]]
            where = calls[number]  # which argument is the path
            raw = _read_c_string(f"{self.root}/{pid}/mem", args[where])
        except (OSError, ValueError, IndexError, KeyError, OverflowError):
            return None
        path = os.fsdecode(raw)
        if path.startswith("/"):
            return path
        dirfd = args[0] & 0xFFFFFFFF if where == 1 else AT_FDCWD_32
        base = "cwd" if dirfd == AT_FDCWD_32 else f"fd/{dirfd}"
        return f"{self.root}/{pid}/{base}/{path}"

    def opening_pids(self, device: int, inode: int) -> list[int]:
        """Processes blocked in open() of this FIFO, waiting for its other end."""
        return sorted(self._opening.get((device, inode), ()))


# open and openat by machine: which argument holds the path
OPEN_CALLS = {"x86_64": {2: 0, 257: 1}, "aarch64": {56: 1}, "riscv64": {56: 1}}
AT_FDCWD_32 = (1 << 32) - 100  # AT_FDCWD (-100), an int: /proc/PID/syscall shows 0xffffff9c


def _read_c_string(mem_path: str, address: int, limit: int = 4096) -> bytes:
    """A NUL-terminated string from another process's memory, a page at a time
    (a read across the end of a mapping fails as a whole)."""
    page = os.sysconf("SC_PAGE_SIZE")
    found = b""
    with open(mem_path, "rb", buffering=0) as mem:
        while len(found) < limit:
            mem.seek(address + len(found))
            chunk = mem.read(page - (address + len(found)) % page)
            if not chunk:
                break
            found += chunk
            if b"\0" in chunk:
                break
    return found.split(b"\0", 1)[0]


def _wchan(root: str, pid: int) -> str:
    try:
        with open(f"{root}/{pid}/wchan") as f:
            return f.read()
    except OSError:
        return ""


_shared: ProcView | None = None


def proc_view() -> ProcView:
    """The view of the running command: every plugin asks the same one."""
    global _shared
    if _shared is None:
        _shared = ProcView()
    return _shared
