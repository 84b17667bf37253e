"""Unix sockets for the core's inspect and clean.

Listed: every unix socket of this network namespace (the kernel's table,
diag.py), and every socket file directly in the scratch directories (/tmp,
/var/tmp, /dev/shm, $XDG_RUNTIME_DIR) or in a directory given as the target.
A socket's target is the name it holds (a PATH, @NAME); a connection a
listener accepted, and an unnamed socket (a client, one end of a socketpair),
is `socket:[INODE]`, as /proc/PID/fd shows it. Users: the processes holding
the socket (from /proc).

A socket file no socket is bound to is kind "file", state "no listener": a
connect to it is refused. clean removes only such files, and only once they
are older than --older-than (a service between bind() and listen() is
refused a connect too, for a moment). A live socket is never removed, even
with --force: unlinking its file would only make it unreachable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from typing import Any

from ipctool.api import (
    IpcObject,
    NotFound,
    ObjectSource,
    ProcView,
    Refused,
    UsageError,
    files_of_kind,
    idle_for,
    scratch_dirs,
)
from ipctool_plugins.unix import diag
from ipctool_plugins.unix.addresses import LIVE, STALE, kind_of, liveness

TYPE_NAMES = {socket.SOCK_STREAM: "stream", socket.SOCK_DGRAM: "dgram", 5: "seqpacket"}
INODE_PREFIX, INODE_SUFFIX = "socket:[", "]"


class UnixSource(ObjectSource):
    mechanism = "unix"
    noun = "socket"
    target_metavar = "PATH|@NAME|socket:[INODE]"
    target_help = (
        "A socket file's path, an abstract @NAME, socket:[INODE], or (inspect, clean "
        "--stale) a directory to look in."
    )
    example_target = "/tmp/app.sock"
    stale_rule = "a socket file nothing listens on (connect is refused)"
    force_removes_in_use = False
    columns = (
        ("target", "target"),
        ("type", "kind"),
        ("state", "state"),
        ("owner", "owner"),
        ("processes", "processes"),
        ("peer", "peer"),
        ("queued", "size"),
        ("idle s", "idle_seconds"),
    )

    def __init__(self) -> None:
        self._table: diag.Table | None = None

    @property
    def table(self) -> diag.Table:
        if self._table is None:
            self._table = diag.table()
        return self._table

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        view = View(self.table, proc)
        if scope is not None:
            return [view.file_object(path) for path in socket_files(scope)]
        found = [view.socket_object(s) for s in self.table.sockets]
        named = {obj.target for obj in found}
        for directory in scratch_dirs():
            for path in socket_files(directory):
                if path not in named:
                    with contextlib.suppress(NotFound, UsageError):
                        found.append(view.file_object(path))
        return found

    def is_scope(self, target: str) -> bool:
        return os.path.isdir(target) and not os.path.islink(target)

    def find(self, target: str, proc: ProcView) -> IpcObject:
        view = View(self.table, proc)
        if target.startswith(INODE_PREFIX) and target.endswith(INODE_SUFFIX):
            sock = self.table.by_inode.get(inode_of(target))
            if sock is None:
                raise NotFound(target, "no such socket")
            return view.socket_object(sock)
        if target.startswith("@"):
            owner = next((s for s in self.table.named(target) if diag.binds(s)), None)
            if owner is None:
                raise NotFound(target, "no socket holds this abstract name")
            return view.socket_object(owner)
        return view.file_object(target)

    def remove(self, obj: IpcObject) -> None:
        if obj.kind != "file":
            raise Refused(
                obj.target,
                f"{obj.in_use or 'in use'}: a live socket is never removed (its file would "
                "only become unreachable); end the process that holds it",
            )
        st = lstat_socket(obj.target)
        if (st.st_dev, st.st_ino) != (obj.extra["device"], obj.id):
            raise NotFound(obj.target, "the socket file changed since it was inspected")
        state, why = liveness(obj.target, st, diag.table())
        if state != STALE:
            raise Refused(obj.target, f"{why}; a live socket file is never removed")
        os.unlink(obj.target)

    def unremovable(self, obj: IpcObject) -> str:
        if obj.extra.get("address") is None or str(obj.extra["address"]).startswith("@"):
            return "no file to remove: the socket goes when the process holding it closes it"
        return f"{self.noun} file cannot be removed by this user"

    def limits(self) -> dict[str, Any]:
        from ipctool.api import read_sysctl

        def sysctl(name: str, default: int) -> int:
            return read_sysctl(f"/proc/sys/net/{name}", default)

        return {
            "max_dgram_qlen": sysctl("unix/max_dgram_qlen", 10),
            "somaxconn": sysctl("core/somaxconn", 4096),
            "wmem_default": sysctl("core/wmem_default", 212992),
            "wmem_max": sysctl("core/wmem_max", 212992),
            "rmem_default": sysctl("core/rmem_default", 212992),
            "rmem_max": sysctl("core/rmem_max", 212992),
            "largest_datagram": 2 * sysctl("core/wmem_max", 212992) - 32,
            "max_name_bytes": 107,
        }

    def notes(self) -> list[str]:
        if self._table is not None and not self._table.detailed:
            return [
                "sock_diag is not available here: from /proc/net/unix, without peers, "
                "queued bytes, owners or socket files (paths matched by name)"
            ]
        return []


def inode_of(target: str) -> int:
    digits = target[len(INODE_PREFIX) : -len(INODE_SUFFIX)]
    if not digits.isdigit():
        raise UsageError(target, "socket:[INODE] takes a number")
    return int(digits)


def socket_files(directory: str) -> list[str]:
    """Every socket file directly in the directory (links are not followed)."""
    return files_of_kind(directory, stat.S_ISSOCK)


def lstat_socket(path: str) -> os.stat_result:
    from ipctool.api import from_os_error

    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise NotFound(path, "no such socket") from None
    except OSError as err:
        raise from_os_error(path, err) from None
    if not stat.S_ISSOCK(st.st_mode):
        raise UsageError(path, f"is {kind_of(st.st_mode)}, not a socket")
    return st


def may_unlink(path: str, st: os.stat_result) -> bool:
    """Write permission on the directory, and in a sticky one (/tmp) ownership too."""
    if os.geteuid() == 0:
        return True
    parent = os.path.dirname(os.path.abspath(path))
    try:
        directory = os.stat(parent)
    except OSError:
        return False
    if not os.access(parent, os.W_OK | os.X_OK):
        return False
    sticky = directory.st_mode & stat.S_ISVTX
    return not sticky or os.geteuid() in (st.st_uid, directory.st_uid)


class View:
    """The kernel's table and /proc, answering for one command."""

    def __init__(self, table: diag.Table, proc: ProcView) -> None:
        self.table = table
        self.proc = proc
        self._holders: dict[int, list[int]] | None = None

    def pids(self, inode: int | None) -> list[int]:
        """Processes holding the socket with this inode (from /proc/PID/fd)."""
        if self._holders is None:
            self._holders = {}
            for (_, ino), holders in self.proc.open_files_of_type(stat.S_IFSOCK).items():
                self._holders[ino] = sorted({h.pid for h in holders})
        return [] if inode is None else self._holders.get(inode, [])

    def owner_of_name(self, sock: diag.UnixSock) -> bool:
        """Whether the socket holds its name (not one of a listener's connections)."""
        return sock.name is not None and diag.binds(sock)

    def target(self, sock: diag.UnixSock) -> str:
        name = sock.name
        if name and self.owner_of_name(sock) and (name.startswith(("@", "/"))):
            return name
        return f"{INODE_PREFIX}{sock.inode}{INODE_SUFFIX}"

    def socket_object(self, sock: diag.UnixSock, path: str | None = None) -> IpcObject:
        users = self.pids(sock.inode)
        st = self._file(sock, path)
        extra = self._facts(sock, users)
        if st is not None:
            extra["device"] = st.st_dev
        return IpcObject(
            "unix",
            TYPE_NAMES.get(sock.kind, str(sock.kind)),
            os.path.abspath(path) if path else self.target(sock),
            id=sock.inode,
            uid=sock.uid if sock.uid is not None else (st.st_uid if st else None),
            mode=st.st_mode & 0o7777 if st else None,
            size=sock.rqueue if sock.kind != socket.SOCK_DGRAM and not sock.listening else None,
            users=users,
            busy=None if users else "held by a process not visible here",
            last_used=st.st_mtime if st else None,
            idle_seconds=None,  # a live socket records no time of use
            removable=may_unlink(path or sock.name or "", st) if st else False,
            extra=extra,
        )

    def _file(self, sock: diag.UnixSock, path: str | None) -> os.stat_result | None:
        """The socket file of a socket holding a path (None for others)."""
        where = path or (sock.name if self.owner_of_name(sock) else None)
        if not where or where.startswith("@"):
            return None
        try:
            st = os.lstat(where)
        except OSError:
            return None
        if sock.file is not None and (st.st_dev, st.st_ino) != sock.file:
            return None  # the name was unlinked and something else put there
        return st if stat.S_ISSOCK(st.st_mode) else None

    def _facts(self, sock: diag.UnixSock, users: list[int]) -> dict[str, Any]:
        peer = self.table.by_inode.get(sock.peer) if sock.peer else None
        facts: dict[str, Any] = {
            "address": sock.name,
            "state": state_of(sock),
            "processes": [{"pid": pid, "command": self.proc.command(pid)} for pid in users],
            "socket_inode": sock.inode,
            "peer": None,
            "peer_inode": sock.peer or None,
            "peer_pids": [],
            "peer_queued": None,
            "pending": None,
            "backlog": None,
            "connections": None,
            "next_message_bytes": None,
        }
        if peer is not None:
            facts["peer"] = peer.name or f"{INODE_PREFIX}{peer.inode}{INODE_SUFFIX}"
            facts["peer_pids"] = self.pids(peer.inode)
            facts["peer_queued"] = peer.rqueue if peer.kind != socket.SOCK_DGRAM else None
        elif sock.peer == 0 and sock.state == diag.ESTABLISHED and sock.kind != socket.SOCK_DGRAM:
            facts["peer"] = "(not accepted yet)"
        if sock.listening:
            facts["pending"] = sock.rqueue
            facts["backlog"] = sock.wqueue
            facts["connections"] = self._accepted(sock)
        elif sock.kind == socket.SOCK_DGRAM and sock.rqueue:
            facts["next_message_bytes"] = sock.rqueue
        return facts

    def _accepted(self, listener: diag.UnixSock) -> int:
        """Connections the listener accepted that are still open (they carry its name)."""
        same = (
            self.table.bound_to_file(*listener.file)
            if listener.file is not None
            else self.table.named(listener.name or "")
        )
        return sum(1 for s in same if s is not listener and s.state == diag.ESTABLISHED)

    def file_object(self, path: str) -> IpcObject:
        """What is at a socket file: the socket bound to it, or a file nothing listens on."""
        st = lstat_socket(path)
        if self.table.detailed:
            bound = [s for s in self.table.bound_to_file(st.st_dev, st.st_ino) if diag.binds(s)]
        else:
            absolute = os.path.abspath(path)
            bound = [s for s in self.table.sockets if s.name in (path, absolute) and diag.binds(s)]
        if bound:
            return self.socket_object(bound[0], path)
        return self.dead_file(path, st)

    def dead_file(self, path: str, st: os.stat_result) -> IpcObject:
        state, why = liveness(path, st, self.table)
        return IpcObject(
            "unix",
            "file",
            os.path.abspath(path),
            id=st.st_ino,
            uid=st.st_uid,
            mode=st.st_mode & 0o7777,
            users=[],
            busy=why if state != STALE else None,
            last_used=st.st_mtime,
            idle_seconds=idle_for(st.st_mtime),
            removable=may_unlink(path, st),
            extra={
                "address": path,
                "state": "no listener" if state == STALE else ("live" if state == LIVE else "?"),
                "processes": [],
                "socket_inode": None,
                "peer": None,
                "device": st.st_dev,
            },
        )


def state_of(sock: diag.UnixSock) -> str:
    if sock.listening:
        return "listening"
    if sock.state == diag.ESTABLISHED:
        return "connected"
    return "bound" if sock.name else "unconnected"
