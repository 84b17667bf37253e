"""POSIX message queues through posix_ipc (imported only by the verbs that use them)."""

from __future__ import annotations

import os
import select
import subprocess
from typing import Any

import posix_ipc

from ipctool.api import (
    NotFound,
    PermissionDenied,
    WouldBlock,
    from_os_error,
    idle_seconds,
    iso_time,
    pids_holding,
    read_sysctl,
    user_name,
    when_ready,
)
from ipctool_plugins.msgq.limits import check_size

SYSCTL = "/proc/sys/fs/mqueue/"
MOUNT_POINT = "/dev/mqueue"
MOUNT_HINT = "as root: mkdir -p /dev/mqueue && mount -t mqueue none /dev/mqueue"


def limits() -> dict[str, int]:
    return {
        name: read_sysctl(SYSCTL + name, default)
        for name, default in (
            ("msg_max", 10),
            ("msgsize_max", 8192),
            ("queues_max", 256),
            ("msg_default", 10),
            ("msgsize_default", 8192),
        )
    }


def mqueue_mount(mount: bool = True) -> str | None:
    """Where the mqueue filesystem is mounted; mounts it at /dev/mqueue when allowed."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "mqueue":
                return fields[1]
    if not mount or os.geteuid() != 0:
        return None
    os.makedirs(MOUNT_POINT, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "mqueue", "mqueue", MOUNT_POINT], capture_output=True, check=False
    )
    return MOUNT_POINT if done.returncode == 0 else None


def _errors(name: str, exc: Exception) -> Exception:
    if isinstance(exc, posix_ipc.ExistentialError):
        return NotFound(name, "no such queue")
    if isinstance(exc, posix_ipc.PermissionsError):
        return PermissionDenied(name, "permission denied")
    return exc


class PosixQueue:
    kind = "posix"

    def __init__(
        self, name: str, *, create: bool = False, mode: int = 0o600, write: bool = True
    ) -> None:
        self.name = self.label = name
        try:
            self.queue = self._open(create, mode, write)
        except (posix_ipc.ExistentialError, posix_ipc.PermissionsError) as exc:
            raise _errors(name, exc) from None
        except OSError as exc:  # e.g. EMFILE: RLIMIT_MSGQUEUE or queues_max reached
            raise from_os_error(name, exc) from None
        # Never block inside posix_ipc: a call that slept could end in its
        # SignalError on Ctrl-C. Waits poll the mqd (a real fd on Linux) instead.
        self.queue.block = False
        self.message_limit = self.queue.max_message_size

    def _open(self, create: bool, mode: int, write: bool) -> Any:
        defaults = limits()

        def open_queue(flags: int) -> Any:
            return posix_ipc.MessageQueue(
                self.name,
                flags,
                mode,
                max_messages=defaults["msg_default"],
                max_message_size=defaults["msgsize_default"],
                read=not write,
                write=write,
            )

        if not create:
            return open_queue(0)
        try:
            queue = open_queue(posix_ipc.O_CREX)
        except posix_ipc.ExistentialError:  # it exists already: use it as it is
            return open_queue(0)
        os.fchmod(queue.mqd, mode)  # mq_open applies the umask; --mode means exactly mode
        return queue

    def close(self) -> None:
        self.queue.close()

    def check_size(self, size: int) -> None:
        check_size(self.label, size, self.message_limit)

    def put(self, data: bytes, priority: int, nowait: bool, timeout: float | None) -> None:
        try:
            self.queue.send(data, None, priority)  # the fast path: room in the queue
        except posix_ipc.BusyError:
            if nowait:
                raise WouldBlock(self.label, "queue is full") from None
            self._put_blocking(data, priority, timeout)
        except ValueError:
            self.check_size(len(data))
            raise

    def _put_blocking(self, data: bytes, priority: int, timeout: float | None) -> None:
        when_ready(
            self.queue.mqd,
            select.POLLOUT,
            lambda: self.queue.send(data, None, priority),
            busy=posix_ipc.BusyError,
            timeout=timeout,
            obj=self.label,
        )

    def poller(self, _selector: int = 0) -> tuple[Any, type[BaseException]]:
        """posix_ipc's own non-blocking receive and what it raises on an empty queue."""
        return self.queue.receive, posix_ipc.BusyError

    def translate(self, exc: BaseException) -> BaseException:
        return _errors(self.label, exc) if isinstance(exc, posix_ipc.Error) else exc

    def wait(self, _selector: int, nowait: bool, timeout: float | None) -> tuple[bytes, int]:
        """Block for a message; callers poll() first, so none is waiting now."""
        if nowait:
            raise WouldBlock(self.label, "no message")
        return when_ready(
            self.queue.mqd,
            select.POLLIN,
            self.queue.receive,
            busy=posix_ipc.BusyError,
            timeout=timeout,
            obj=self.label,
            watch_stdout=True,
        )


def _record(name: str, st: os.stat_result, queue: Any | None) -> dict[str, Any]:
    holders = sorted(set(pids_holding(st.st_dev, st.st_ino)) - {os.getpid()})
    return {
        "target": name,
        "kind": "posix",
        "key": None,
        "id": None,
        "name": name,
        "owner": user_name(st.st_uid),
        "uid": st.st_uid,
        "mode": f"{st.st_mode & 0o777:04o}",
        "messages": queue.current_messages if queue else None,
        "bytes": _queue_size(name),
        "max_bytes": queue.max_messages * queue.max_message_size if queue else None,
        "max_message": queue.max_message_size if queue else None,
        "max_messages": queue.max_messages if queue else None,
        "last_send_pid": None,
        "last_send_alive": None,
        "last_recv_pid": None,
        "last_recv_alive": None,
        "holders": holders,
        "send_time": None,
        "recv_time": None,
        "change_time": iso_time(st.st_mtime),
        "idle_seconds": idle_seconds(st.st_mtime),
        "creator": user_name(st.st_uid),
        "creator_uid": st.st_uid,
    }


def _queue_size(name: str) -> int | None:
    """QSIZE from the mqueue filesystem: bytes of messages waiting."""
    mount = mqueue_mount(mount=False)
    if not mount:
        return None
    try:
        with open(os.path.join(mount, name.lstrip("/"))) as f:
            fields = dict(item.split(":", 1) for item in f.read().split())
        return int(fields["QSIZE"])
    except (OSError, KeyError, ValueError):
        return None


def record_for_name(name: str) -> dict[str, Any]:
    try:
        queue = posix_ipc.MessageQueue(name, 0, read=True, write=False)
    except posix_ipc.ExistentialError:
        raise NotFound(name, "no such queue") from None
    except posix_ipc.PermissionsError:
        queue = None
    if queue is None:  # not readable: what the mqueue filesystem shows
        mount = mqueue_mount()
        if not mount:
            raise PermissionDenied(name, "permission denied")
        return _record(name, os.stat(os.path.join(mount, name[1:])), None)
    try:
        return _record(name, os.fstat(queue.mqd), queue)
    finally:
        queue.close()


def records() -> list[dict[str, Any]] | None:
    """Every queue, or None when no mqueue filesystem is mounted or mountable."""
    mount = mqueue_mount()
    if mount is None:
        return None
    found = []
    for entry in sorted(os.listdir(mount)):
        try:
            found.append(record_for_name("/" + entry))
        except (NotFound, PermissionDenied):
            continue
    return found


def in_use_by(record: dict[str, Any]) -> list[int]:
    """Processes that have the queue open (descriptors in /proc/*/fd)."""
    return record["holders"]


def remove(record: dict[str, Any]) -> None:
    try:
        posix_ipc.unlink_message_queue(record["name"])
    except (posix_ipc.ExistentialError, posix_ipc.PermissionsError) as exc:
        raise _errors(record["name"], exc) from None
