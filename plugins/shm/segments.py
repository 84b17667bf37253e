"""SysV segments (sysv_ipc) and POSIX objects (posix_ipc), opened as one `Segment`:
a memoryview of the whole mapping, its address, and how to remove it.

Imported only by send and recv: both libraries load here.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
from typing import TYPE_CHECKING, Any

import posix_ipc
import sysv_ipc

from ipctool.api import (
    IpcTarget,
    NotFound,
    PermissionDenied,
    TooLarge,
    from_os_error,
    signed_key,
)

if TYPE_CHECKING:
    from ipctool_plugins.shm.board import Readable

_libc = ctypes.CDLL(None, use_errno=True)
_libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
_libc.shmget.restype = ctypes.c_int
IPC_CREAT, IPC_EXCL, IPC_RMID = 0o1000, 0o2000, 0
SHM_DEST = 0o1000  # in shm_perm.mode: marked for removal (IPC_RMID while attached)
LARGEST_OBJECT = (1 << 63) - 1  # off_t's largest: a POSIX object is a tmpfs file


class Segment:
    """One attached segment or mapped object. `view` spans all of it (writable
    unless opened read-only: then writing to it would fault, so no one does)."""

    def __init__(self, label: str, view: memoryview, handle: Any, kind: str) -> None:
        self.label = label
        self.view = view
        self.handle = handle  # sysv_ipc.SharedMemory, or (mmap, fd, inode) for POSIX
        self.kind = kind
        self.created = False
        self.readable: Readable = view  # what recv reads (a FileReader for a sparse object)

    @property
    def size(self) -> int:
        return len(self.readable)

    @property
    def address(self) -> int:
        if self.kind == "sysv":
            return int(self.handle.address)
        if self.handle[0] is None:  # an empty object has no mapping (Ring refuses it)
            return 0
        return ctypes.addressof(ctypes.c_char.from_buffer(self.handle[0]))

    def close(self) -> None:
        # An error on its way out (a timeout, Ctrl-C, a gone peer) may still hold
        # views of the memory in its traceback's frames: then the view and the
        # mapping stay until that is dropped, or the process ends and the kernel
        # unmaps them (a BufferError here would turn every early end into an
        # internal error).
        with contextlib.suppress(BufferError):
            self.view.release()
        if self.kind == "sysv":
            with contextlib.suppress(sysv_ipc.Error):
                self.handle.detach()
            return
        mapping, fd, _ = self.handle
        if mapping is not None:
            with contextlib.suppress(BufferError):
                mapping.close()
        os.close(fd)

    def reserve(self, offset: int, length: int) -> None:
        """Make sure a POSIX object's pages for these bytes exist before we write
        them: another program may have sized it sparse (ftruncate), and a page a
        full /dev/shm cannot give is SIGBUS at the write. SysV segments are not
        on /dev/shm's tmpfs; only the kernel's shm limits bound them."""
        if self.kind == "sysv" or not length:
            return
        try:
            os.posix_fallocate(self.handle[1], offset, length)
        except OSError as err:
            raise no_room(self.label, length, err) from None

    def still_there(self) -> bool:
        """Another process can still find it: a SysV segment not marked for
        removal, a POSIX name that still names this object."""
        try:
            if self.kind == "sysv":
                return not self.handle.mode & SHM_DEST
            return os.stat("/dev/shm" + self.label).st_ino == self.handle[2]
        except (OSError, sysv_ipc.Error):
            return False

    def remove(self) -> None:
        """Remove the segment (attached processes keep it until they detach)."""
        if self.kind == "sysv":
            with contextlib.suppress(sysv_ipc.Error):  # removed already (by the peer)
                sysv_ipc.remove_shared_memory(self.handle.id)
            return
        inode = self.handle[2]
        try:
            if os.stat("/dev/shm" + self.label).st_ino == inode:  # still ours, not a new one
                posix_ipc.unlink_shared_memory(self.label)
        except (OSError, posix_ipc.Error):
            pass


def sysv_error(label: str, err: Exception) -> Exception:
    if isinstance(err, sysv_ipc.ExistentialError):
        return NotFound(label, "no such segment")
    if isinstance(err, sysv_ipc.PermissionsError):
        return PermissionDenied(label, "permission denied")
    if isinstance(err, OSError):
        return from_os_error(label, err)
    return err


def sysv_id(key: int, label: str) -> int:
    """The id of the segment with this key (shmget, no attach: sysv_ipc would attach)."""
    found = _libc.shmget(signed_key(key), 0, 0)
    if found == -1:
        code = ctypes.get_errno()
        if code == errno.ENOENT:
            raise NotFound(label, "no such segment")
        raise from_os_error(label, OSError(code, os.strerror(code)))
    return int(found)


def attach_sysv(segment_id: int, label: str, readonly: bool) -> Segment:
    flags = sysv_ipc.SHM_RDONLY if readonly else 0
    try:
        shm = sysv_ipc.attach(segment_id, None, flags)
    except (sysv_ipc.Error, OSError) as err:
        raise sysv_error(label, err) from None
    return Segment(label, memoryview(shm), shm, "sysv")


def create_sysv(key: int, label: str, size: int, mode: int) -> Segment | None:
    """A new segment, or None if one with the key exists (another made it first).

    Made with shmget itself, then attached: sysv_ipc's constructor would write its
    init character over the new segment after creating it, and so over what a peer
    that found the segment meanwhile (the other end of a stream) had written. The
    kernel gives it zero-filled."""
    made = _libc.shmget(signed_key(key), size, IPC_CREAT | IPC_EXCL | mode)
    if made == -1:
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return None
        if code in (errno.EINVAL, errno.ENOSPC, errno.ENOMEM):
            raise TooLarge(label, f"{size} bytes: beyond the kernel's limits (shmmax, shmall)")
        raise from_os_error(label, OSError(code, os.strerror(code)))
    try:
        segment = attach_sysv(made, label, readonly=False)
    except BaseException as err:  # no address space for it (RLIMIT_AS), a signal: unmade
        _libc.shmctl(made, IPC_RMID, None)
        if isinstance(err, MemoryError):
            raise TooLarge(label, f"{size} bytes: no address space to attach them") from None
        raise
    segment.created = True
    return segment


def posix_error(name: str, err: Exception) -> Exception:
    if isinstance(err, posix_ipc.ExistentialError):
        return NotFound(name, "no such segment")
    if isinstance(err, posix_ipc.PermissionsError):
        return PermissionDenied(name, "permission denied")
    if isinstance(err, OSError):
        return from_os_error(name, err)
    return err


def map_posix(name: str, fd: int, readonly: bool) -> Segment:
    st = os.fstat(fd)
    mapping = None
    if readonly and st.st_blocks * 512 < st.st_size:
        # Sparse (another program sized it with ftruncate): reading a hole through
        # a mapping takes a page from tmpfs, SIGBUS on a full /dev/shm; pread
        # gives its zeros without one, and reads only what recv asks for.
        from ipctool_plugins.shm.board import FileReader

        segment = Segment(name, memoryview(b""), (None, fd, st.st_ino), "posix")
        segment.readable = FileReader(fd, st.st_size)
        return segment
    if st.st_size:
        access = mmap.ACCESS_READ if readonly else mmap.ACCESS_WRITE
        try:
            mapping = mmap.mmap(fd, st.st_size, access=access)
        except OSError as err:
            os.close(fd)
            raise from_os_error(name, err) from None
    view = memoryview(mapping) if mapping is not None else memoryview(b"")
    if readonly and mapping is not None:
        view = view.toreadonly()
    return Segment(name, view, (mapping, fd, st.st_ino), "posix")


def open_posix(name: str, readonly: bool) -> Segment:
    try:
        shm = posix_ipc.SharedMemory(name, 0, read_only=readonly)
    except (posix_ipc.Error, OSError) as err:
        raise posix_error(name, err) from None
    return map_posix(name, shm.fd, readonly)


def no_room(name: str, size: int, err: OSError) -> Exception:
    if err.errno == errno.EFBIG:  # /dev/shm may have room; this process may not grow a file
        return TooLarge(name, f"{size} bytes: past this process's file size limit (ulimit -f)")
    if err.errno in (errno.ENOSPC, errno.ENOMEM):
        return TooLarge(name, f"{size} bytes: no room for them in /dev/shm")
    return from_os_error(name, err)


def create_posix(name: str, size: int, mode: int) -> Segment | None:
    """A new object of `size` bytes, or None if one with the name exists.

    Sized by posix_fallocate, not ftruncate: that reserves its pages, so a full
    /dev/shm is an error line here instead of SIGBUS at the first write to a
    page tmpfs cannot give (for us and for every process that maps it). It also
    sets the size only once the pages are there, so a peer finds size 0 (and
    waits) or all of it. A size past off_t's is refused before anything is made
    (posix_fallocate could not even be asked)."""
    if size > LARGEST_OBJECT:
        raise TooLarge(name, f"{size} bytes: more than any object can hold")
    try:
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode, 0)
    except posix_ipc.ExistentialError:
        return None
    except (posix_ipc.Error, OSError, ValueError) as err:
        raise posix_error(name, err) from None
    try:
        os.fchmod(shm.fd, mode)  # shm_open applied the umask; --mode means exactly this mode
        os.posix_fallocate(shm.fd, 0, size)
        segment = map_posix(name, shm.fd, readonly=False)  # closes the fd if it fails
    except BaseException as err:  # no room, no address space (mmap), a signal: unmade
        with contextlib.suppress(OSError):
            os.close(shm.fd)
        with contextlib.suppress(posix_ipc.Error):
            posix_ipc.unlink_shared_memory(name)
        if isinstance(err, OSError) and err.errno != errno.EBADF:
            raise no_room(name, size, err) from None
        raise
    segment.created = True
    return segment


def open_segment(where: IpcTarget, readonly: bool) -> Segment:
    """The existing segment the target names (NotFound, exit 3, if there is none)."""
    if where.name is not None:
        return open_posix(where.name, readonly)
    segment_id = where.id if where.id is not None else sysv_id(where.key or 0, where.label)
    return attach_sysv(segment_id, where.label, readonly)


def open_or_create(where: IpcTarget, size: int, mode: int) -> Segment:
    """The segment, created with `size` bytes if there is none (a KEY or /NAME only)."""
    try:
        return open_segment(where, readonly=False)
    except NotFound:
        if where.id is not None:
            raise
    made = (
        create_posix(where.name, size, mode)
        if where.name is not None
        else create_sysv(where.key or 0, where.label, size, mode)
    )
    return made if made is not None else open_segment(where, readonly=False)
