"""Stream mode's ring buffer in any shared mapping: one sender, one receiver.

Nothing here knows SysV or POSIX (the mmap plugin runs it over a file). The
layout, little-endian, offsets in bytes (README "Shared memory", "The ring"):

      0 u64 magic        "ipcring1"          8 u32 version (1)
     12 u32 header_size (256)               16 u64 capacity (data bytes)
     24 u32 made_for_stream: 1 if a side created the segment (only then is it removed)
     64 u64 head         bytes the sender has written, ever (only it stores)
     72 u32 sender_pid                      76 u32 sender_state
     80 u32 to_receiver  event count: the receiver's futex word
     84 u32 receiver_sleeping              88 u32 sender_claim
    128 u64 tail         bytes the receiver has taken, ever (only it stores)
    136 u32 receiver_pid                   140 u32 receiver_state
    144 u32 to_sender    event count: the sender's futex word
    148 u32 sender_sleeping                152 u32 receiver_claim
    256 data[capacity]   byte i of the stream is at data[i % capacity]

A side takes its role by an atomic compare-and-swap of its claim word from 0
to its pid (FUTEX_TRYLOCK_PI does exactly that in the kernel, for a language
without atomics; a failed try may set the word's top bit): of two senders
started at once, one gets the ring and the other is refused.

States: 0 not yet come, 1 running, 2 done (sender: end of stream), 3 stopped
early (an error, Ctrl-C, a timeout). Free room is capacity - (head - tail).

Wake-ups: after storing head (or its state) the sender adds 1 to to_receiver
and, only if receiver_sleeping is set, calls FUTEX_WAKE on it. A receiver with
nothing to read reads to_receiver, sets receiver_sleeping, looks at head and
sender_state once more, and calls FUTEX_WAIT(to_receiver, the value it read)
(shared futexes: never FUTEX_PRIVATE_FLAG). The sender waits for room the same
way on to_sender. Waits last at most WAIT_SLICE, after which the peer's pid is
checked (a peer killed outright can say nothing); the index words are read and
written whole (aligned 64-bit loads and stores).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import stat
import struct
from collections.abc import Callable
from typing import NoReturn

from ipctool.api import (
    Deadline,
    IpcError,
    NotFound,
    Refused,
    StdoutClosed,
    UsageError,
    pid_alive,
    stdout_reader_left,
)

MAGIC = int.from_bytes(b"ipcring1", "little")
VERSION = 1
HEADER_SIZE = 256
NONE, RUNNING, DONE, STOPPED = 0, 1, 2, 3
WAIT_SLICE = 0.1  # seconds between looks at the peer's pid while waiting
CHUNK = 1 << 20  # most bytes moved by one read or write (progress is published per chunk)
FUTEX_WAIT, FUTEX_WAKE, FUTEX_TRYLOCK_PI = 0, 1, 8
FUTEX_TID_MASK = 0x3FFFFFFF  # a claim word's pid, without the kernel's flag bits
SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "riscv64": 98}
U64, U32 = ctypes.c_uint64, ctypes.c_uint32

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class Header(ctypes.Structure):
    _fields_ = (
        ("magic", U64),
        ("version", U32),
        ("header_size", U32),
        ("capacity", U64),
        ("made_for_stream", U32),
        ("_pad0", ctypes.c_uint8 * 36),
        ("head", U64),
        ("sender_pid", U32),
        ("sender_state", U32),
        ("to_receiver", U32),
        ("receiver_sleeping", U32),
        ("sender_claim", U32),
        ("_pad1", ctypes.c_uint8 * 36),
        ("tail", U64),
        ("receiver_pid", U32),
        ("receiver_state", U32),
        ("to_sender", U32),
        ("sender_sleeping", U32),
        ("receiver_claim", U32),
        ("_pad2", ctypes.c_uint8 * 100),
    )


assert ctypes.sizeof(Header) == HEADER_SIZE


def futex(address: int, op: int, value: int, timeout: float | None = None) -> int:
    """FUTEX_WAIT (returns on a wake, a changed word, a signal or the timeout), WAKE
    or TRYLOCK_PI (0 if it took the word); -1 on an error."""
    spec = None
    if timeout is not None:
        seconds = int(timeout)
        spec = ctypes.byref(Timespec(seconds, int((timeout - seconds) * 1e9)))
    number = SYS_FUTEX.get(os.uname().machine, 202)
    return int(_libc.syscall(number, ctypes.c_void_p(address), op, value, spec, None, 0))


_FIXED = struct.Struct("<QIIQ")  # magic, version, header_size, capacity
MADE_AT = 24  # made_for_stream's offset


def prepare(view: memoryview, label: str, created: bool) -> None:
    """A new segment is all zeros: write the fixed fields (each side writes the same
    values, so both may). Anything else is no ring of ours. The side that created
    the segment says so (made_for_stream), before the magic."""
    capacity = len(view) - HEADER_SIZE
    if created:
        struct.pack_into("<I", view, MADE_AT, 1)
    magic, version, header_size, held = _FIXED.unpack_from(view, 0)
    # No magic yet: new, or the other side is writing these same fields right now.
    if (
        magic == 0
        and version in (0, VERSION)
        and header_size in (0, HEADER_SIZE)
        and held in (0, capacity)
        and not any(view[MADE_AT + 4 : HEADER_SIZE])
    ):
        struct.pack_into("<IIQ", view, 8, VERSION, HEADER_SIZE, capacity)
        struct.pack_into("<Q", view, 0, MAGIC)  # last: a peer that sees it sees the rest
        return
    if magic != MAGIC or version != VERSION or header_size != HEADER_SIZE:
        raise UsageError(label, "holds no ipctool stream ring (a blackboard?)")
    if not 0 < held <= capacity:
        raise UsageError(label, "the ring's header does not match the segment's size")


_SIDES = struct.Struct("<II")  # a side's pid and state
SIDES_AT = {"sender": 72, "receiver": 136}


def running_sides(view: memoryview) -> list[str]:
    """The live sides of a ring in `view` ("sender pid 7"), if it holds one."""
    if len(view) <= HEADER_SIZE or _FIXED.unpack_from(view, 0)[0] != MAGIC:
        return []
    found = []
    for role, at in SIDES_AT.items():
        pid, state = _SIDES.unpack_from(view, at)
        if state == RUNNING and pid_alive(pid):
            found.append(f"{role} pid {pid}")
    return found


class Ring:
    """The ring in a mapping: `view` covers the whole mapping, `address` is its start."""

    def __init__(
        self, view: memoryview, address: int, label: str, created: bool, mechanism: str = "shm"
    ) -> None:
        if len(view) <= HEADER_SIZE:
            raise UsageError(label, f"a stream needs more than {HEADER_SIZE} bytes (--size)")
        prepare(view, label, created)  # before any ctypes view: a failure leaves none behind
        self.label = label
        self.mechanism = mechanism  # whose clean removes a left-over ring (in messages)
        self.header = Header.from_buffer(view)
        self.data = view[HEADER_SIZE:]
        self.to_receiver = address + Header.to_receiver.offset
        self.to_sender = address + Header.to_sender.offset
        self.address = address
        self.capacity = int(self.header.capacity)
        # Whether the memory can still be found by its name: a peer yet to come
        # cannot join a ring that was removed (its opener sets this).
        self.still_there: Callable[[], bool] | None = None
        self.watch_stdout = False  # the receiver: its stdout's reader may leave

    @property
    def made_for_stream(self) -> bool:
        """A side created the segment for a stream (one another program made stays)."""
        return bool(self.header.made_for_stream)

    def release(self) -> None:
        """Drop our views of the mapping, so that it can be unmapped."""
        del self.header
        self.data.release()

    # -- each side's start and end ------------------------------------------------

    def claim(self, sending: bool) -> None:
        """Take the sender's or receiver's role: atomically, so that of two sides
        started at once one is refused (a plain look-then-store lets both in)."""
        h = self.header
        word = self.address + (Header.sender_claim if sending else Header.receiver_claim).offset
        if h.sender_state if sending else h.receiver_state:  # no try: it would mark the word
            self.refuse(sending)
        if futex(word, FUTEX_TRYLOCK_PI, 0) != 0:
            self.refuse(sending)
        if sending:
            h.sender_pid, h.sender_state = os.getpid(), RUNNING
        else:
            h.receiver_pid, h.receiver_state = os.getpid(), RUNNING
        self.notify(not sending)

    def refuse(self, sending: bool) -> NoReturn:
        h = self.header
        state, pid = (
            (h.sender_state, h.sender_pid) if sending else (h.receiver_state, h.receiver_pid)
        )
        claimed = (h.sender_claim if sending else h.receiver_claim) & FUTEX_TID_MASK
        pid = pid or claimed
        role = "sender" if sending else "receiver"
        how = "left" if state not in (NONE, RUNNING) or not pid_alive(pid) else "running"
        raise Refused(
            self.label,
            f"the ring already has a {role} (pid {pid}, {how}); one stream at a time "
            f"(ipctool {self.mechanism} clean {self.label} removes a left-over ring)",
        )

    def finish(self, sending: bool, state: int) -> None:
        h = self.header
        if sending:
            h.sender_state = state
        else:
            h.receiver_state = state
        self.notify(not sending, always=True)

    def notify(self, receiver: bool, always: bool = False) -> None:
        """Tell the peer something changed; a system call only if it sleeps."""
        h = self.header
        if receiver:
            h.to_receiver = (h.to_receiver + 1) & 0xFFFFFFFF
            if always or h.receiver_sleeping:
                futex(self.to_receiver, FUTEX_WAKE, 1)
        else:
            h.to_sender = (h.to_sender + 1) & 0xFFFFFFFF
            if always or h.sender_sleeping:
                futex(self.to_sender, FUTEX_WAKE, 1)

    # -- waiting --------------------------------------------------------------------

    def _sleep(self, receiver: bool, seen: int, deadline: Deadline) -> None:
        """One wait on our event word (already marked sleeping), at most WAIT_SLICE."""
        left = deadline.remaining()
        slice_ = WAIT_SLICE if left is None else min(WAIT_SLICE, left)
        futex(self.to_receiver if receiver else self.to_sender, FUTEX_WAIT, seen, slice_)
        if deadline.expired():
            raise deadline.error(self.label)

    def check_peer(self, receiver: bool) -> None:
        """A peer that stopped early, or whose process is gone, ends the stream."""
        h = self.header
        if receiver:
            role, state, pid = "sender", h.sender_state, h.sender_pid
        else:
            role, state, pid = "receiver", h.receiver_state, h.receiver_pid
        if state == STOPPED:
            raise IpcError(self.label, f"the {role} (pid {pid}) stopped before the end")
        if state == NONE:
            claimed = (h.sender_claim if receiver else h.receiver_claim) & FUTEX_TID_MASK
            if claimed and not pid_alive(claimed):  # took the role, died before running
                raise IpcError(self.label, f"the {role} (pid {claimed}) is gone before the end")
            if self.still_there is not None and not self.still_there():
                raise NotFound(self.label, f"was removed before a {role} came")
        if state == RUNNING and not pid_alive(pid):
            raise IpcError(self.label, f"the {role} (pid {pid}) is gone before the end")

    def wait_data(self, tail: int, deadline: Deadline) -> int:
        """Bytes readable at `tail` (waiting for some), or 0 at the end of the stream."""
        h = self.header
        while True:
            head = h.head
            if head != tail:
                return int(head - tail)
            if h.sender_state == DONE:  # set after the last head: look once more
                return int(h.head - tail)
            self.check_peer(receiver=True)
            if self.watch_stdout and stdout_reader_left():
                raise StdoutClosed(errno.EPIPE, "stdout: reader went away")
            seen = h.to_receiver
            h.receiver_sleeping = 1
            if h.head == tail and h.sender_state in (NONE, RUNNING):
                self._sleep(True, seen, deadline)
            h.receiver_sleeping = 0

    def wait_room(
        self, head: int, deadline: Deadline, input_ended: Callable[[], bool] | None = None
    ) -> int:
        """Bytes free for the sender at `head`, waiting for some; 0 if the ring is
        full and `input_ended()` says there is nothing more to send."""
        h = self.header
        while True:
            free = self.capacity - (head - h.tail)
            if free:
                if h.receiver_state == STOPPED:
                    self.check_peer(receiver=False)
                return int(free)
            self.check_peer(receiver=False)
            if input_ended is not None and input_ended():
                return 0
            seen = h.to_sender
            h.sender_sleeping = 1
            if head - h.tail == self.capacity and h.receiver_state in (NONE, RUNNING):
                self._sleep(False, seen, deadline)
            h.sender_sleeping = 0

    # -- the two loops --------------------------------------------------------------

    def send_from(self, fd: int, timeout: float | None) -> int:
        """Copy fd (to its EOF) into the ring; returns the bytes sent.

        Input is read straight into the ring, once fd is readable (a wait that a
        signal ends), and the read and the head that publishes it happen with
        signals held: bytes taken from stdin always reach the ring. While the
        ring is full, the input's end is looked for too (without reading): the
        sender then ends once its last byte is in the ring, as a pipe's writer
        does, not when a receiver makes room."""
        from ipctool.api import interrupts_deferred, wait_fd

        h, data, capacity = self.header, self.data, self.capacity
        deadline = Deadline(timeout)
        head = int(h.head)
        kind = os.fstat(fd).st_mode
        while True:
            free = self.wait_room(head, deadline, lambda: input_ended(fd, kind))
            if not free:
                return head
            if not ready_now(fd):
                wait_fd(fd, select.POLLIN, timeout=None, obj="stdin")
            at = head % capacity
            with interrupts_deferred():
                # Readable, so this does not block (unless another process shares
                # the pipe and took the bytes first).
                got = read_into(fd, data[at : at + min(free, capacity - at, CHUNK)])
                if got is None:  # a non-blocking stdin with nothing after all
                    continue
                if got:
                    head += got
                    h.head = head
                    self.notify(receiver=True)
            if not got:
                return head
            deadline.restart()

    def receive_to(self, fd: int, timeout: float | None) -> int:
        """Copy the stream from the ring to fd until its end; returns the bytes taken."""
        h, data, capacity = self.header, self.data, self.capacity
        deadline = Deadline(timeout)
        tail = int(h.tail)
        self.watch_stdout = fd == 1
        while True:
            ready = self.wait_data(tail, deadline)
            if not ready:
                return tail
            at = tail % capacity
            size = min(ready, capacity - at, CHUNK)
            tail += write_some(fd, data[at : at + size])
            h.tail = tail
            self.notify(receiver=False)
            deadline.restart()


def ready_now(fd: int) -> bool:
    """fd has data or its end to read now (a regular file always has)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def input_ended(fd: int, kind: int) -> bool:
    """The input is at its end, seen without reading it: a pipe whose writers
    are gone and that holds nothing, a regular file read to its size. For other
    kinds (a terminal, a socket) it cannot be told without taking bytes: False."""
    if stat.S_ISFIFO(kind):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return any(not ev & select.POLLIN and ev & select.POLLHUP for _, ev in poller.poll(0))
    if stat.S_ISREG(kind):
        try:
            return os.lseek(fd, 0, os.SEEK_CUR) >= os.fstat(fd).st_size
        except OSError:
            return False
    return False


def read_into(fd: int, view: memoryview) -> int | None:
    """os.readv of stdin, None if a non-blocking stdin has nothing yet, errors
    named as stdin's."""
    from ipctool.api import from_os_error

    try:
        return os.readv(fd, [view])
    except BlockingIOError:
        return None
    except OSError as err:
        raise from_os_error("stdin", err) from None


def write_some(fd: int, view: memoryview) -> int:
    """os.write to stdout (waiting for room when a parent made it non-blocking);
    our reader gone is the quiet 141, other errors named as stdout's."""
    from ipctool.api import from_os_error, wait_fd

    while True:
        try:
            return os.write(fd, view)
        except BlockingIOError:
            wait_fd(fd, select.POLLOUT, timeout=None, obj="stdout", watch_stdout=True)
        except BrokenPipeError:
            raise StdoutClosed from None
        except OSError as err:
            raise from_os_error("stdout", err) from None
