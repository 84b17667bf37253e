"""Contract cases for shm: the kit's unique SysV keys and POSIX names, removed without
ipctool."""

from __future__ import annotations

import contextlib

from ipctool.api import ContractCase
from ipctool.testing import ipc_cases, posix_names_left, posix_unlinker


def remove_sysv(target: str) -> None:
    import sysv_ipc

    with contextlib.suppress(sysv_ipc.ExistentialError):
        key = int(target, 0)
        segment = sysv_ipc.SharedMemory(key - (1 << 32) if key > 0x7FFFFFFF else key)
        segment.detach()
        segment.remove()


remove_posix = posix_unlinker("unlink_shared_memory")


def posix_leftovers() -> list[str]:
    return posix_names_left("/dev/shm")


STREAM_ARGS = ("--stream", "--size", str((2 << 20) + 4096))
# The ring, recv first. The kit reads recv's stdout only once send has ended,
# so the ring must hold the whole 1 MiB: a smaller one would rely on recv's
# stdout pipe growing to 1 MiB, which the kernel refuses to a user over
# fs.pipe-user-pages-soft. Wrapping is tests/test_shm.py's (a 44-byte ring).
STREAM = {
    "recv_first": True,
    "send_args": STREAM_ARGS,
    "recv_args": STREAM_ARGS,
    "stream": True,
    "waits": True,  # recv on the ring waits for its sender
    "lasting": False,  # the receiver removes the ring at the end of the stream
}


def contract_cases() -> list[ContractCase]:
    return ipc_cases(
        "shm",
        remove_sysv=remove_sysv,
        remove_posix=remove_posix,
        sysv_table="/proc/sysvipc/shm",
        posix_leftovers=posix_leftovers,
        variants=[
            ("sysv-stream", {**STREAM, "bad_target": "0x"}),
            ("posix-stream", {**STREAM, "bad_target": "/a/b"}),
        ],
        waits=False,  # a blackboard: recv prints what is there, it never waits
    )
