"""Files opened for mapping, safely: the path walk, the type checks, creation, the mapping.

Rules (README "Memory-mapped files"):

- The last component is never followed: it is opened with O_NOFOLLOW, and a
  symbolic link there is refused (exit 2) and left untouched.
- A symbolic link among the parent directories is followed only where
  fs.protected_symlinks would follow it: not in a sticky, world-writable
  directory (/tmp) unless the link is ours or the directory owner's. ipctool
  applies that rule itself, whatever the sysctl says, to the path as given.
- Only a regular file is opened: a directory, device, FIFO or socket is
  refused (exit 2) from lstat alone, before any open (opening a FIFO or a
  device can block or act). O_NONBLOCK and a check that the opened file is
  the one lstat saw cover a swap in between.
- A new file appears whole: it is made unnamed (O_TMPFILE) in the directory,
  given its mode, size and disk blocks, and only then linked at the path, so
  the other end of a stream never finds it half made; where the filesystem
  has no O_TMPFILE it is created in place with O_EXCL.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import stat

from ipctool.api import NotFound, UsageError, from_os_error

OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def wrong_type(path: str, mode: int) -> UsageError:
    return UsageError(path, f"is {kind_of(mode)}, not a regular file; left untouched")


def file_error(path: str, err: OSError) -> Exception:
    if err.errno == errno.ELOOP:
        return UsageError(path, "is a symbolic link, not a regular file; left untouched")
    if err.errno == errno.ENOENT:
        return NotFound(path, "no such file")
    return from_os_error(path, err)


def check_parents(path: str) -> None:
    """Refuse a symbolic link among the parents that fs.protected_symlinks would not
    follow: one in a sticky, world-writable directory, owned by neither us nor it."""
    # The path as the kernel walks it: not normalised, since ".." after a link
    # goes up from the link's target, not from the link.
    full = path if path.startswith("/") else os.path.join(os.getcwd(), path)
    parts = [p for p in full.split("/")[:-1] if p not in ("", ".")]
    parent = "/"
    for part in parts:
        here = os.path.join(parent, part)
        try:
            st = os.lstat(here)
        except OSError:
            return  # the open that follows says what is wrong
        if stat.S_ISLNK(st.st_mode):
            check_link(here, st, parent)
        parent = here


def check_link(link: str, st: os.stat_result, parent: str) -> None:
    try:
        directory = os.stat(parent)
    except OSError:
        return
    shared = directory.st_mode & stat.S_ISVTX and directory.st_mode & stat.S_IWOTH
    if shared and st.st_uid not in (os.geteuid(), directory.st_uid):
        raise UsageError(
            link,
            "a symbolic link in a shared sticky directory, owned by another user; "
            "not followed (as fs.protected_symlinks)",
        )


def lstat_regular(path: str) -> os.stat_result:
    """What is at the path, if it is a regular file; every other type is refused."""
    if not path:
        raise UsageError(None, "name a file's path")
    check_parents(path)
    try:
        st = os.lstat(path)
    except OSError as err:
        raise file_error(path, err) from None
    if not stat.S_ISREG(st.st_mode):
        raise wrong_type(path, st.st_mode)
    return st


def open_existing(path: str, writable: bool) -> int:
    """A descriptor of the regular file at the path (never following a link)."""
    seen = lstat_regular(path)
    try:
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | OPEN_FLAGS)
    except OSError as err:
        raise file_error(path, err) from None
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UsageError(path, "changed while it was opened; left untouched")
    return fd


def create_new(path: str, size: int, mode: int, fill: bytes = b"") -> int | None:
    """A new file of `size` bytes (mode exactly `mode`, `fill` at its start), or None
    if something is at the path already (another process made it first)."""
    check_parents(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise file_error(path, err) from None
        return create_in_place(path, size, mode, fill)
    try:
        prepare_new(path, fd, size, mode, fill)
        link_in(fd, path)
    except FileExistsError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def link_in(fd: int, path: str) -> None:
    """Give the unnamed file its name (linkat following /proc's link to it; a dir_fd
    makes Python call linkat, and plain link() would link the /proc link itself)."""
    root = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=root, follow_symlinks=True)
    except FileExistsError:
        raise
    except OSError as err:
        raise file_error(path, err) from None
    finally:
        os.close(root)


def create_in_place(path: str, size: int, mode: int, fill: bytes) -> int | None:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, mode)
    except FileExistsError:
        return None
    except OSError as err:
        raise file_error(path, err) from None
    try:
        prepare_new(path, fd, size, mode, fill)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    return fd


def prepare_new(path: str, fd: int, size: int, mode: int, fill: bytes) -> None:
    """Mode, size and blocks: with its blocks reserved, writing through the mapping
    cannot meet a full disk (which would be SIGBUS, not an error)."""
    try:
        os.fchmod(fd, mode)  # the umask applied at creation; --mode means exactly this
        os.ftruncate(fd, size)
        os.posix_fallocate(fd, 0, size)
        if fill:
            os.pwrite(fd, fill, 0)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            from ipctool.api import TooLarge

            raise TooLarge(path, f"{size} bytes: {os.strerror(err.errno)}") from None
        raise from_os_error(path, err) from None


class MappedFile:
    """A regular file mapped MAP_SHARED: `view` spans all of it (read-only unless
    opened writable); `created` if this command made it."""

    def __init__(self, path: str, fd: int, writable: bool, created: bool = False) -> None:
        self.label = path
        self.fd = fd
        self.created = created
        st = os.fstat(fd)
        self.identity = (st.st_dev, st.st_ino)
        self.mapping: mmap.mmap | None = None
        self.view = memoryview(b"")
        if st.st_size:
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            try:
                self.mapping = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, access=access)
            except OSError as err:
                os.close(fd)
                raise from_os_error(path, err) from None
            self.view = memoryview(self.mapping)
            if not writable:
                self.view = self.view.toreadonly()

    @property
    def size(self) -> int:
        return len(self.view)

    @property
    def address(self) -> int:
        assert self.mapping is not None
        return ctypes.addressof(ctypes.c_char.from_buffer(self.mapping))

    def sync(self) -> None:
        """msync(MS_SYNC): the data on disk before we return."""
        if self.mapping is not None:
            try:
                self.mapping.flush()
            except OSError as err:
                raise from_os_error(self.label, err) from None

    def close(self) -> None:
        # An error on its way out (a timeout, Ctrl-C, a gone peer) may still hold a
        # view of the mapping in its traceback's frames: then the mapping stays until
        # that is dropped, or the process ends and the kernel unmaps it.
        with contextlib.suppress(BufferError):
            self.view.release()
            if self.mapping is not None:
                self.mapping.close()
        os.close(self.fd)

    def still_there(self) -> bool:
        """The path still names this file."""
        try:
            st = os.lstat(self.label)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.identity

    def remove(self) -> None:
        """Unlink the path if it still names this file (not one put there since)."""
        try:
            st = os.lstat(self.label)
            if (st.st_dev, st.st_ino) == self.identity:
                os.unlink(self.label)
        except OSError:
            pass  # gone already (the lecture's reader unlinks it)


def open_file(path: str, writable: bool) -> MappedFile:
    return MappedFile(path, open_existing(path, writable), writable)


def open_or_create(path: str, size: int, mode: int) -> MappedFile:
    """The file, created with `size` bytes if nothing is at the path."""
    for _ in range(10):  # made and removed by others meanwhile: look again
        try:
            return open_file(path, writable=True)
        except NotFound:
            pass
        fd = create_new(path, size, mode)
        if fd is not None:
            return MappedFile(path, fd, writable=True, created=True)
    raise NotFound(path, "appeared and vanished repeatedly while it was opened")
