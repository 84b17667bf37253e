"""POSIX message queues through posix_ipc (imported only by the verbs that use them)."""

from __future__ import annotations

import functools
import os
import subprocess
from typing import Any

import posix_ipc

from ipctool.api import (
    IpcError,
    NotFound,
    PermissionDenied,
    Timeout,
    WouldBlock,
    from_os_error,
    idle_seconds,
    iso_time,
    pids_holding,
    read_sysctl,
    user_name,
    wait_for,
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


# posix_ipc turns mq_open's EMFILE and ENOSPC into these texts, without an errno
_EMFILE_TEXT = "maximum number of files open"
_ENOSPC_TEXT = "insufficient space for a new queue"


def _open_error(name: str, exc: OSError, creating: bool) -> Exception:
    """mq_open's errors, with the limit that was hit named.

    EMFILE also means the user's RLIMIT_MSGQUEUE has no room for a new queue's
    messages, and ENOSPC means queues_max: the C library's words say neither.
    """
    import errno

    text = str(exc).lower()
    if creating and (exc.errno == errno.EMFILE or _EMFILE_TEXT in text) and not _out_of_fds():
        import resource

        allowed = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
        wanted = limits()
        return IpcError(
            name,
            f"RLIMIT_MSGQUEUE (ulimit -q: {allowed} bytes for all of this user's POSIX "
            f"queues) has no room for a queue of {wanted['msg_default']} messages of "
            f"{wanted['msgsize_default']} bytes",
        )
    if exc.errno == errno.ENOSPC or _ENOSPC_TEXT in text:
        return IpcError(
            name,
            f"queues_max ({limits()['queues_max']}) reached: the system takes no more "
            f"POSIX queues ({SYSCTL}queues_max)",
        )
    return from_os_error(name, exc)


def _out_of_fds() -> bool:
    """Whether this process has as many descriptors open as RLIMIT_NOFILE allows."""
    import resource

    return len(os.listdir("/proc/self/fd")) >= resource.getrlimit(resource.RLIMIT_NOFILE)[0]


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
        except OSError as exc:  # e.g. RLIMIT_MSGQUEUE or queues_max reached
            raise _open_error(name, exc, create) from None
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

    def sending(self, priority: int, nowait: bool, timeout: float | None) -> PosixQueue:
        """This queue as send's Outlet: messages of this priority, waiting as asked."""
        self.priority, self.nowait, self.timeout = priority, nowait, timeout
        return self

    def put(self, data: bytes, _channel: int | None = None) -> None:
        try:
            self.queue.send(data, 0, self.priority)  # the fast path: room in the queue
        except posix_ipc.BusyError:
            if self.nowait:
                raise WouldBlock(self.label, "queue is full") from None
            self._put_blocking(data)
        except ValueError:
            self.check_size(len(data))
            raise

    def _put_blocking(self, data: bytes) -> None:
        priority = self.priority
        wait_for(
            lambda: self.queue.send(data, None, priority),
            timeout=self.timeout,
            obj=self.label,
            signaled=posix_ipc.SignalError,
        )

    def try_put(self, data: bytes, _channel: int | None = None) -> None:
        self.queue.send(data, 0, self.priority)

    def take_all(self, _channel: int) -> None:
        pass  # no channels: every piece carries its stream's id instead

    def lock_for_stream(self, receiving: bool = False) -> None:
        """One stream at a time on a POSIX queue, and one stream receiver: pieces of
        two streams cannot be kept apart, and a second receiver would take pieces
        of the stream the first one writes. So a second sender (or receiver) waits,
        up to --timeout, until the first is done: a lock on the queue, released
        when the process ends, however it ends. Senders take a POSIX record lock
        (they can write), receivers an flock (they may only read): on Linux the
        two kinds never block each other."""
        import fcntl
        import time

        lock = fcntl.flock if receiving else fcntl.lockf
        role = "received from" if receiving else "sent to"
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                lock(self.queue.mqd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except (BlockingIOError, PermissionError):
                pass  # lockf says EACCES or EAGAIN for a lock held by another process
            if self.nowait:
                raise WouldBlock(self.label, f"another stream is being {role} it")
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(
                    self.label,
                    f"timed out after {self.timeout:g} s: another stream is being {role} it",
                )
            time.sleep(0.02)  # neither lock can wait with a timeout

    def receiving(
        self, _selector: int = 0, nowait: bool = False, timeout: float | None = None
    ) -> PosixQueue:
        """This queue as recv's Inbox (the kernel gives the highest priority first)."""
        self.nowait, self.timeout = nowait, timeout
        return self

    def poller(self, _channel: int | None = None) -> tuple[Any, type[BaseException]]:
        """posix_ipc's own non-blocking receive and what it raises on an empty queue."""
        return functools.partial(self.queue.receive, 0), posix_ipc.BusyError

    def wait(self, _channel: int | None, timeout: float | None) -> tuple[bytes, int]:
        """Block for a message; callers poll() first, so none is waiting now."""
        return wait_for(
            lambda: self.queue.receive(None),
            timeout=timeout,
            obj=self.label,
            signaled=posix_ipc.SignalError,
            watch_stdout=True,
        )

    def put_back(self, messages: list[tuple[bytes, int]]) -> None:
        """Messages recv took but could not write, sent again with their priorities
        through a descriptor opened for writing (recv's own reads only)."""
        writer = posix_ipc.MessageQueue(self.name, 0, read=False, write=True)
        try:
            for data, priority in messages:
                writer.send(data, 0, priority)
        finally:
            writer.close()

    def recover(self, _exc: BaseException) -> bool:
        return False  # the buffer is mq_msgsize, which cannot change for an open queue

    def translate(self, exc: BaseException) -> BaseException:
        return _errors(self.label, exc) if isinstance(exc, posix_ipc.Error) else exc


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
