"""TCP sockets for the core's inspect, and the tcp plugin's clean report.

Listed: every TCP socket of this network namespace, IPv4 and IPv6, from the
kernel's table (sock_diag, or /proc/net/tcp{,6}): listeners, connections in
every state, sockets bound and not yet listening. A listener's target is its
address (127.0.0.1:4242, [::]:8080); a connection's is LOCAL,PEER
(127.0.0.1:4242,127.0.0.1:51234); a socket that is neither is socket:[INODE],
as /proc/PID/fd shows it. `inspect ADDRESS` lists the sockets at an address:
its listener (or the one listening on every interface at that port) and the
connections whose either end it is; `:PORT` there means that port on any
address.

Users: the processes holding the socket (from /proc). A connection whose
peer is on this host names the peer's processes too. A TCP socket is never
stale (it lives exactly while a process holds it): clean reports what needs
attention (`report`) and closes one named socket only with --force, from
outside, as `ss -K` does (remove: sock_diag's SOCK_DESTROY, root only).
"""

from __future__ import annotations

import errno
import socket
import stat
from typing import Any

from ipctool.api import (
    InetSock,
    IpcObject,
    NotFound,
    ObjectSource,
    ProcView,
    Refused,
    UsageError,
    inet_table,
)

INODE_PREFIX, INODE_SUFFIX = "socket:[", "]"
ORPHAN_WHY = "no process holds it: the kernel ends it by itself"
QUEUED_WHY = "not accepted yet: it waits in its listener's queue"
# States of a connection no process holds that a listener has not accepted yet
# (inode 0, as every socket no process holds): the others are closing.
QUEUED_STATES = {"ESTAB", "SYN-RECV", "CLOSE-WAIT"}
NEVER_REMOVED = "a TCP socket goes when the process holding it closes it"
FORCE_HINT = "--force closes it from outside (root)"
DESTROY_REASONS = {
    errno.EPERM: "permission denied: closing a socket from outside needs root (CAP_NET_ADMIN)",
    errno.EOPNOTSUPP: "this kernel cannot close a socket from outside "
    "(CONFIG_INET_DIAG_DESTROY), or has no socket table here",
    errno.ENOENT: "closed meanwhile",
}


class TcpSource(ObjectSource):
    mechanism = "tcp"
    noun = "socket"
    target_metavar = "ADDRESS|LOCAL,PEER|socket:[INODE]"
    target_help = (
        "A socket as inspect names it (a listener's address, a connection's LOCAL,PEER, "
        "socket:[INODE]), or an address (HOST:PORT, :PORT) to list every socket at."
    )
    example_target = ":4242"
    stale_rule = "never: a TCP socket goes when its process closes it"
    force_removes_in_use = True  # clean SOCKET --force closes a live one from outside
    columns = (
        ("target", "target"),
        ("state", "state"),
        ("owner", "owner"),
        ("processes", "processes"),
        ("queued", "size"),
        ("unsent", "unsent"),
        ("pending", "pending"),
        ("idle s", "idle_seconds"),
    )

    def __init__(self) -> None:
        self._table: Any = None
        self.sockets: dict[str, InetSock] = {}  # target -> the socket, for remove()

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = inet_table(socket.IPPROTO_TCP)
        return self._table

    def objects(self, proc: ProcView, scope: str | None = None) -> list[IpcObject]:
        view = View(self.table.sockets, proc)
        every = sorted(self.table.sockets, key=lambda s: (not s.listening, s.local[1]))
        chosen = every if scope is None else at_address(every, scope)
        if scope is not None and not chosen:
            raise NotFound(scope, "no TCP socket at this address")
        return [self._object(view, s) for s in chosen]

    def _object(self, view: View, sock: InetSock) -> IpcObject:
        obj = view.socket_object(sock)
        self.sockets[obj.target] = sock
        return obj

    def is_scope(self, target: str) -> bool:
        return not (target.startswith(INODE_PREFIX) or "," in target)

    def find(self, target: str, proc: ProcView) -> IpcObject:
        view = View(self.table.sockets, proc)
        inode = inode_of(target) if target.startswith(INODE_PREFIX) else None
        for sock in self.table.sockets:
            if (sock.inode == inode) if inode else matches_pair(sock, target):
                return self._object(view, sock)
        raise NotFound(target, "no such TCP socket")

    def remove(self, obj: IpcObject) -> None:
        """Close the socket from outside (as ss -K): its holder's next call fails
        with ECONNABORTED, a connection's peer gets a reset. One no process holds
        is left to the kernel."""
        from ipctool.api import destroy_inet_socket, naming

        why = unheld(obj)
        if why:
            raise Refused(obj.target, why)
        with naming(obj.target, reasons=DESTROY_REASONS):
            destroy_inet_socket(socket.IPPROTO_TCP, self.sockets[obj.target])

    def stale(self, obj: IpcObject, older_than: float) -> bool:
        obj.stale_reason = obj.in_use or unheld(obj)
        return False

    def unremovable(self, obj: IpcObject) -> str:
        return refusal(obj)

    def limits(self) -> dict[str, Any]:
        from ipctool.api import read_sysctl

        def sysctl(name: str, default: Any) -> Any:
            return read_sysctl(f"/proc/sys/net/{name}", default)

        low, high = _port_range()
        return {
            "somaxconn": sysctl("core/somaxconn", 4096),
            "max_syn_backlog": sysctl("ipv4/tcp_max_syn_backlog", 128),
            "ephemeral_ports": f"{low}-{high}",
            "fin_timeout": sysctl("ipv4/tcp_fin_timeout", 60),
            "bindv6only": sysctl("ipv6/bindv6only", 0),
            "rmem_max": sysctl("core/rmem_max", 212992),
            "wmem_max": sysctl("core/wmem_max", 212992),
        }

    def notes(self) -> list[str]:
        if self._table is not None and not self._table.detailed:
            return ["sock_diag is not available here: from /proc/net/tcp{,6}, without idle times"]
        return []


def inode_of(target: str) -> int:
    digits = target[len(INODE_PREFIX) : -len(INODE_SUFFIX)]
    if not (target.endswith(INODE_SUFFIX) and digits.isdigit() and int(digits)):
        raise UsageError(target, "socket:[INODE] takes a number (as /proc/PID/fd shows it)")
    return int(digits)


def _port_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def refusal(obj: IpcObject) -> str:
    """Why clean leaves a socket alone, and who could end it."""
    return unheld(obj) or f"{holders(obj)} holds it: {NEVER_REMOVED}; {FORCE_HINT}"


def unheld(obj: IpcObject) -> str | None:
    """Why no process holds the socket (None when one does)."""
    if obj.extra.get("socket_inode") is not None:
        return None
    return QUEUED_WHY if obj.extra["state"] in QUEUED_STATES else ORPHAN_WHY


def holders(obj: IpcObject) -> str:
    named = ", ".join(f"{p['pid']} ({p['command']})" for p in obj.extra["processes"])
    return f"pid {named}" if named else "a process not visible here"


# --- addresses ---------------------------------------------------------------


def endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def plain(host: str) -> str:
    """An IPv4 peer of a dual-stack socket (::ffff:127.0.0.1) as the IPv4 address."""
    return host.removeprefix("::ffff:") if host.startswith("::ffff:") and "." in host else host


def at_address(sockets: list[InetSock], text: str) -> list[InetSock]:
    """The sockets whose local or peer end is the address (:PORT: any address). A
    listener on every interface (0.0.0.0, ::) is at each address of this host:
    loopback, and every address a socket of the table is bound to."""
    from ipctool.api import parse_host_port, resolve_addresses

    wanted = parse_host_port(text, listening=True)
    hosts: set[str] | None = None
    if wanted.host is not None:
        found = resolve_addresses(wanted, socket.SOCK_STREAM, passive=True)
        hosts = {plain(sockaddr[0]) for _, sockaddr in found}
        ours = {plain(s.local[0]) for s in sockets} | {"127.0.0.1", "::1"}
        if hosts & ours or any(h.startswith("127.") for h in hosts):
            hosts |= {"0.0.0.0", "::"}
    return [
        s
        for s in sockets
        if _at(s.local, hosts, wanted.port) or (s.connected and _at(s.peer, hosts, wanted.port))
    ]


def _at(end: tuple[str, int], hosts: set[str] | None, port: int) -> bool:
    return end[1] == port and (hosts is None or plain(end[0]) in hosts)


def matches_pair(sock: InetSock, target: str) -> bool:
    """LOCAL,PEER as typed (a dual-stack socket's IPv4 ends in either form)."""
    local, comma, peer = target.partition(",")
    if not comma:
        return False
    ends = (endpoint(*sock.local), endpoint(*sock.peer))
    plain_ends = (endpoint(plain(sock.local[0]), sock.local[1]),
                  endpoint(plain(sock.peer[0]), sock.peer[1]))  # fmt: skip
    return (local, peer) in (ends, plain_ends)


def ends(local: tuple[str, int], peer: tuple[str, int]) -> tuple[tuple[str, int], ...]:
    """A connection's two ends, a dual-stack socket's IPv4 ends as IPv4."""
    return (plain(local[0]), local[1]), (plain(peer[0]), peer[1])


# --- records -------------------------------------------------------------------


class View:
    """The kernel's table and /proc, answering for one command."""

    def __init__(self, sockets: list[InetSock], proc: ProcView) -> None:
        self.proc = proc
        self._holders: dict[int, list[int]] | None = None
        # A connection on this host has its other end in the table too.
        self.by_ends = {ends(s.local, s.peer): s for s in sockets if s.connected}

    def pids(self, inode: int) -> list[int]:
        if self._holders is None:
            self._holders = {}
            for (_, ino), holders in self.proc.open_files_of_type(stat.S_IFSOCK).items():
                self._holders[ino] = sorted({h.pid for h in holders})
        return self._holders.get(inode, []) if inode else []

    def target(self, sock: InetSock) -> str:
        if sock.listening:
            return endpoint(*sock.local)
        if sock.connected:
            return f"{endpoint(*sock.local)},{endpoint(*sock.peer)}"
        return f"{INODE_PREFIX}{sock.inode}{INODE_SUFFIX}"

    def socket_object(self, sock: InetSock) -> IpcObject:
        users = self.pids(sock.inode)
        listener = sock.listening
        kind = "listener" if listener else ("connection" if sock.connected else "socket")
        return IpcObject(
            "tcp",
            kind,
            self.target(sock),
            id=sock.inode or None,
            uid=sock.uid if sock.inode else None,  # no owner once no process holds it
            size=None if listener else sock.rqueue,
            users=users,
            busy=self._busy(sock, users),
            idle_seconds=sock.idle,
            removable=False,
            extra=self._facts(sock, users),
        )

    def _busy(self, sock: InetSock, users: list[int]) -> str | None:
        if users:
            return None
        if sock.inode:
            return "held by a process not visible here"
        return QUEUED_WHY if sock.state_name in QUEUED_STATES else None

    def _facts(self, sock: InetSock, users: list[int]) -> dict[str, Any]:
        peer = self.by_ends.get(ends(sock.peer, sock.local)) if sock.connected else None
        peer_pids = self.pids(peer.inode) if peer is not None else []
        return {
            "family": "ipv6" if sock.family == socket.AF_INET6 else "ipv4",
            "state": sock.state_name,
            "local": endpoint(*sock.local),
            "peer": endpoint(*sock.peer) if sock.connected else None,
            "processes": [{"pid": pid, "command": self.proc.command(pid)} for pid in users],
            "socket_inode": sock.inode or None,
            "unsent": None if sock.listening else sock.wqueue,
            "pending": sock.rqueue if sock.listening else None,
            "backlog": sock.wqueue if sock.listening else None,
            "peer_pids": peer_pids,
        }


# --- clean's report ---------------------------------------------------------------


def attention(obj: IpcObject) -> str | None:
    """Why a socket needs someone's attention, or None."""
    facts = obj.extra
    held = holders(obj)
    if obj.kind == "listener" and facts["pending"]:
        count = facts["pending"]
        waiting = "connection waits" if count == 1 else "connections wait"
        return f"{count} {waiting} to be accepted: {held} has not taken them"
    if facts["state"] == "CLOSE-WAIT" and facts["socket_inode"] is not None:
        return f"the peer closed the connection; {held} has not closed its end"
    return None


def report(target: str | None, *, force: bool, as_json: bool, dry_run: bool) -> None:
    """clean: without a target, the sockets that need attention (each "skipped",
    with why and who can act), then one line on stderr saying that nothing was
    removed. With one, the sockets it names are refused (exit 6), or with
    --force the one socket it names is closed from outside."""
    from ipctool.api import ProcView

    source = TcpSource()
    proc = ProcView()
    if target is None:
        survey(source, proc, as_json)
    elif force:
        obj = one_socket(source, target, proc)
        if not dry_run:
            source.remove(obj)
        action, what = ("would remove", "to close") if dry_run else ("removed", "closed")
        reason = f"{what} from outside; {holders(obj)} held it"
        write_report([entry(obj, action, reason)], as_json)
    else:
        named = (
            source.objects(proc, scope=target)
            if source.is_scope(target)
            else [source.find(target, proc)]
        )
        write_report([entry(obj, "skipped", refusal(obj)) for obj in named], as_json)
        raise Refused(target, named_refusal(named))


def survey(source: TcpSource, proc: ProcView, as_json: bool) -> None:
    """clean without a target: a report of what needs attention; nothing removed."""
    from ipctool.api import say

    every = source.objects(proc)
    entries = [entry(obj, "skipped", why) for obj in every if (why := attention(obj))]
    write_report(entries, as_json)
    orphans = sum(1 for obj in every if unheld(obj) == ORPHAN_WHY)
    ending = (
        f"; {orphans} no process holds any more, which the kernel ends by itself"
        if orphans
        else ""
    )
    if entries:
        say(
            f"ipctool: tcp: nothing removed: {NEVER_REMOVED}, or when clean SOCKET --force "
            f"closes it (root) ({len(entries)} listed{ending})"
        )
    else:
        say(
            "ipctool: tcp: nothing to clean: no listener has connections waiting and no "
            f"connection is left half-closed (CLOSE-WAIT) by its process{ending}"
        )


def one_socket(source: TcpSource, target: str, proc: ProcView) -> IpcObject:
    """The one socket --force may close: named as inspect names it, or the one
    listener at an address."""
    if not source.is_scope(target):
        return source.find(target, proc)
    listeners = [o for o in source.objects(proc, scope=target) if o.kind == "listener"]
    if len(listeners) != 1:
        raise UsageError(
            target,
            "--force closes one socket: name it as inspect does (LOCAL,PEER, "
            f"socket:[INODE], or an address with one listener; here {len(listeners)})",
        )
    return listeners[0]


def named_refusal(named: list[IpcObject]) -> str:
    """clean TARGET's error: who holds what was named, and what --force does."""
    if len(named) == 1:
        return refusal(named[0])
    pids = sorted({pid for obj in named for pid in obj.users})
    if not pids:
        return f"{NEVER_REMOVED}; no process here holds these {len(named)}"
    processes = {p["pid"]: p["command"] for obj in named for p in obj.extra["processes"]}
    who = ", ".join(f"{pid} ({processes.get(pid, '?')})" for pid in pids)
    return f"pid {who} holds these {len(named)}: {NEVER_REMOVED}; {FORCE_HINT}, one at a time"


def entry(obj: IpcObject, action: str, reason: str) -> dict[str, Any]:
    return {
        "mechanism": "tcp",
        "target": obj.target,
        "kind": obj.kind,
        "id": obj.id,
        "action": action,
        "reason": reason,
        "state": obj.extra["state"],
        "users": obj.users,
    }


def write_report(entries: list[dict[str, Any]], as_json: bool) -> None:
    import sys

    from ipctool.api import print_json, printable

    if as_json:
        print_json(entries)
        return
    for e in entries:
        line = f"{e['action']} {e['kind']} {e['target']}: {e['reason']}"
        sys.stdout.write(printable(line) + "\n")
