"""Contract cases for shm: the kit's unique SysV keys and POSIX names, removed without
ipctool."""

from __future__ import annotations

import contextlib
import os

from ipctool.api import ContractCase
from ipctool.testkit import run_key_prefix, run_name_prefix, unique_key, unique_name


def remove_sysv(target: str) -> None:
    import sysv_ipc

    with contextlib.suppress(sysv_ipc.ExistentialError):
        key = int(target, 0)
        segment = sysv_ipc.SharedMemory(key - (1 << 32) if key > 0x7FFFFFFF else key)
        segment.detach()
        segment.remove()


def remove_posix(target: str) -> None:
    import posix_ipc

    with contextlib.suppress(posix_ipc.ExistentialError):
        posix_ipc.unlink_shared_memory(target)


def sysv_leftovers() -> list[str]:
    with open("/proc/sysvipc/shm") as f:
        next(f)
        keys = [int(line.split()[0]) & 0xFFFFFFFF for line in f]
    return [hex(k) for k in keys if k >> 16 == run_key_prefix()]


def posix_leftovers() -> list[str]:
    prefix = run_name_prefix().lstrip("/")
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return []
    return ["/" + n for n in names if n.startswith(prefix)]


STREAM_ARGS = ("--stream", "--size", str((2 << 20) + 4096))


def contract_cases() -> list[ContractCase]:
    return [
        ContractCase(
            mechanism="shm",
            label="sysv",
            new_target=lambda: hex(unique_key()),
            remove=remove_sysv,
            bad_target="notakey",
            leftovers=sysv_leftovers,
            waits=False,  # a blackboard: recv prints what is there, it never waits
        ),
        ContractCase(
            mechanism="shm",
            label="posix",
            new_target=unique_name,
            remove=remove_posix,
            bad_target="/two/slashes",
            leftovers=posix_leftovers,
            waits=False,
        ),
        # The ring, recv first. The kit reads recv's stdout only once send has ended,
        # so the ring must hold the whole 1 MiB: a smaller one would rely on recv's
        # stdout pipe growing to 1 MiB, which the kernel refuses to a user over
        # fs.pipe-user-pages-soft. Wrapping is tests/test_shm.py's (a 44-byte ring).
        ContractCase(
            mechanism="shm",
            label="sysv-stream",
            new_target=lambda: hex(unique_key()),
            remove=remove_sysv,
            bad_target="0x",
            recv_first=True,
            send_args=STREAM_ARGS,
            recv_args=STREAM_ARGS,
            stream=True,
            lasting=False,  # the receiver removes the ring at the end of the stream
            leftovers=sysv_leftovers,
        ),
        ContractCase(
            mechanism="shm",
            label="posix-stream",
            new_target=unique_name,
            remove=remove_posix,
            bad_target="/a/b",
            recv_first=True,
            send_args=STREAM_ARGS,
            recv_args=STREAM_ARGS,
            stream=True,
            lasting=False,
            leftovers=posix_leftovers,
        ),
    ]
