"""A SysV queue reached by its id, for `--id`: also queues no key can name (IPC_PRIVATE).

sysv_ipc opens queues by key only. This adapter calls msgsnd/msgrcv on the id
through ctypes and raises sysv_ipc's own exceptions, so `SysvQueue` drives it
exactly as it drives a `sysv_ipc.MessageQueue`.
"""

from __future__ import annotations

import ctypes
import struct

from ipctool_plugins.msgq.sysv import library_error

IPC_NOWAIT = 0o4000
LONG = struct.calcsize("l")  # the mtype that heads every message buffer

_libc = ctypes.CDLL(None, use_errno=True)
_libc.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.msgsnd.restype = ctypes.c_int
_libc.msgrcv.argtypes = [
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_long,
    ctypes.c_int,
]
_libc.msgrcv.restype = ctypes.c_ssize_t


def _fail() -> None:
    raise library_error(ctypes.get_errno())


class QueueById:
    """The part of sysv_ipc.MessageQueue's interface that SysvQueue uses."""

    def __init__(self, queue_id: int, max_message_size: int) -> None:
        self.id = queue_id
        self.max_size = max_message_size  # msg_qbytes needs msgctl; msgmax bounds a message
        self._buffer = ctypes.create_string_buffer(LONG + max_message_size)

    def send(self, message: bytes, block: bool = True, type: int = 1) -> None:
        if len(message) > self.max_size:  # as sysv_ipc does; msgsnd would say EINVAL
            raise ValueError("The message is longer than max_message_size")
        data = struct.pack("l", type) + bytes(message)
        if _libc.msgsnd(self.id, data, len(data) - LONG, 0 if block else IPC_NOWAIT) == -1:
            _fail()

    def receive(self, block: bool = True, type: int = 0) -> tuple[bytes, int]:
        size = _libc.msgrcv(
            self.id, self._buffer, len(self._buffer) - LONG, type, 0 if block else IPC_NOWAIT
        )
        if size == -1:
            _fail()
        address = ctypes.addressof(self._buffer)
        return ctypes.string_at(address + LONG, size), struct.unpack_from("l", self._buffer)[0]


IPC_STAT = 2
# struct msqid_ds of 64-bit glibc (x86_64, aarch64, riscv64): 48 bytes of
# ipc_perm, then stime, rtime, ctime, __msg_cbytes, msg_qnum, msg_qbytes, 8 each.
_QNUM_AT, _QBYTES_AT = 80, 88
_libc.msgctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
_libc.msgctl.restype = ctypes.c_int


def queue_bytes(queue_id: int, expected_messages: int) -> int | None:
    """msg_qbytes of a queue, from msgctl(IPC_STAT), or None where the layout is
    not the one above (checked: msg_qnum must match what /proc shows)."""
    if LONG != 8:
        return None
    buffer = ctypes.create_string_buffer(256)
    if _libc.msgctl(queue_id, IPC_STAT, buffer) == -1:
        return None
    qnum, qbytes = struct.unpack_from("QQ", buffer, _QNUM_AT)
    return qbytes if qnum == expected_messages else None
