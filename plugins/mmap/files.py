"""Files opened for mapping, safely: the path walk, the type checks, creation, the mapping.

Rules (README "Memory-mapped files"):

- The path is walked one component at a time, each opened (O_PATH, never
  following a link) relative to the directory before it: every rule below is
  checked on what was actually opened, and the file is then opened, made or
  removed relative to the directory the walk ended in, never by its path
  again. A directory swapped for a link after a check changes nothing, and
  `..` after a link goes up from the link's target, as the kernel's walk does.
- The last component is never followed: a symbolic link there is refused
  (exit 2) and left untouched.
- A symbolic link met on the way (among the parents, or in a link's target)
  is followed only where no one else can have put it: never in a
  world-writable directory without the sticky bit (anyone can replace any
  entry there, so no link in it is anyone's own), and in a sticky,
  world-writable one (/tmp) only if it is ours or the directory owner's, as
  fs.protected_symlinks would, whatever the sysctl says.
- Only a regular file is opened: a directory, device, FIFO or socket is
  refused (exit 2) from its lstat alone, before any open (opening a FIFO or a
  device can block or act). O_NONBLOCK and a check that the opened file is
  the one lstat saw cover a swap in between.
- A new file appears whole: it is made unnamed (O_TMPFILE) in the directory,
  given its mode, size, disk blocks and data, and only then linked at the
  name, so the other end of a stream never finds it half made; where the
  filesystem has no O_TMPFILE it is created in place with O_EXCL.
- Holes never meet a full filesystem through a mapping (which would be
  SIGBUS, not an error): a writer reserves the blocks it is about to reach
  (reserve), and a reader preads a sparse file instead of reading its holes
  through a mapping, which on tmpfs takes pages.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import mmap
import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ipctool.api import NotFound, TooLarge, UsageError, from_os_error

if TYPE_CHECKING:
    from ipctool_plugins.shm.board import Readable

OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
STEP_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC  # a link there is opened itself
DIRECTORY_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
MAX_LINKS = 40  # as the kernel's walk: more than this is a loop
LARGEST_FILE = (1 << 63) - 1  # off_t's largest: no file can be bigger
NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


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


# --- the walk: a path's directory, opened by the rules ------------------------------


def walk(path: str, parts: list[str]) -> int:
    """The directory `parts` lead to (from / or the working directory), opened O_PATH
    one component at a time; a link is followed only if check_link allows it in
    the directory it is actually in, and only by its target as read from it."""
    absolute = path.startswith("/")
    fd = os.open("/" if absolute else ".", DIRECTORY_FLAGS)
    todo = parts[::-1]
    shown = "/" if absolute else ""  # where the walk is, for error lines
    links = 0
    try:
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            here = os.path.join(shown, part)
            fd, target = step(path, fd, part, here)
            if target is None:
                shown = here
                continue
            links += 1
            if links > MAX_LINKS:
                raise UsageError(path, "too many levels of symbolic links")
            if target.startswith("/"):
                os.close(fd)
                fd = -1
                fd = os.open("/", DIRECTORY_FLAGS)
                shown = "/"
            todo.extend(target.split("/")[::-1])
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def step(path: str, fd: int, part: str, here: str) -> tuple[int, str | None]:
    """One component in the directory `fd`: (that directory, None), closing `fd`;
    or for a link the rules let us follow, (`fd`, the link's target)."""
    try:
        found = os.open(part, STEP_FLAGS, dir_fd=fd)
    except OSError as err:
        raise file_error(path, err) from None
    try:
        st = os.fstat(found)
        if stat.S_ISLNK(st.st_mode):
            check_link(here, st, os.fstat(fd))
            target = os.readlink("", dir_fd=found)  # the very link that was checked
            os.close(found)
            return fd, target
        if not stat.S_ISDIR(st.st_mode):
            raise from_os_error(path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)))
    except BaseException:
        os.close(found)
        raise
    os.close(fd)
    return found, None


def check_link(link: str, st: os.stat_result, directory: os.stat_result) -> None:
    """Refuse a link someone else may have put in a shared directory: any link in a
    world-writable one without the sticky bit, and in a sticky one (as
    fs.protected_symlinks) a link owned by neither us nor the directory's owner."""
    if not directory.st_mode & stat.S_IWOTH:
        return
    if not directory.st_mode & stat.S_ISVTX:
        raise UsageError(
            link,
            "a symbolic link in a world-writable directory without the sticky bit "
            "(anyone can replace it); not followed",
        )
    if st.st_uid not in (os.geteuid(), directory.st_uid):
        raise UsageError(
            link,
            "a symbolic link in a shared sticky directory, owned by another user; "
            "not followed (as fs.protected_symlinks)",
        )


class Place:
    """Where the path's file is, or is to be: the directory the walk ended in (open
    O_PATH, so later changes to the path's directories and links change nothing)
    and the name in it. Everything after the walk is relative to that directory."""

    def __init__(self, path: str) -> None:
        if not path:
            raise UsageError(None, "name a file's path")
        *parents, name = path.split("/")
        self.label = path
        self.name = name or "."  # "dir/" names the directory itself: refused as one
        self.dir_fd = walk(path, parents)

    def __enter__(self) -> Place:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def lstat(self) -> os.stat_result:
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError as err:
            raise file_error(self.label, err) from None

    def regular(self) -> os.stat_result:
        """What is at the name, if it is a regular file; every other type is refused."""
        st = self.lstat()
        if not stat.S_ISREG(st.st_mode):
            raise wrong_type(self.label, st.st_mode)
        return st

    def open(self, writable: bool) -> int:
        """A descriptor of the regular file at the name (never following a link)."""
        seen = self.regular()
        flags = (os.O_RDWR if writable else os.O_RDONLY) | OPEN_FLAGS
        try:
            fd = os.open(self.name, flags, dir_fd=self.dir_fd)
        except OSError as err:
            raise file_error(self.label, err) from None
        st = os.fstat(fd)
        if identity(st) != identity(seen) or not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise UsageError(self.label, "changed while it was opened; left untouched")
        return fd

    def names(self, file: tuple[int, int]) -> bool:
        """The name still names this file (device, inode)."""
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return False
        return identity(st) == file

    def unlink_if(self, file: tuple[int, int]) -> None:
        """Unlink the name if it still names this file (not one put there since)."""
        if self.names(file):
            with contextlib.suppress(OSError):  # gone meanwhile (the lecture's reader)
                os.unlink(self.name, dir_fd=self.dir_fd)

    def create(
        self, size: int, mode: int, pieces: Iterable[tuple[int, memoryview]] = ()
    ) -> int | None:
        """A new file of `size` bytes (mode exactly `mode`, each (start, bytes) of
        `pieces` written in it), or None if something is at the name already
        (another process made it first)."""
        if size > LARGEST_FILE:
            raise TooLarge(self.label, f"{size} bytes: more than any file can hold")
        try:
            fd = os.open(".", os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode, dir_fd=self.dir_fd)
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise file_error(self.label, err) from None
            return self.create_in_place(size, mode, pieces)
        try:
            prepare_new(self.label, fd, size, mode, pieces)
            self.link_in(fd)
        except FileExistsError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def link_in(self, fd: int) -> None:
        """Give the unnamed file its name (linkat following /proc's link to it: a
        dir_fd makes Python call linkat, and plain link() would link the /proc
        link itself)."""
        try:
            os.link(
                f"/proc/self/fd/{fd}", self.name, dst_dir_fd=self.dir_fd, follow_symlinks=True
            )
        except FileExistsError:
            raise
        except OSError as err:
            raise file_error(self.label, err) from None

    def create_in_place(
        self, size: int, mode: int, pieces: Iterable[tuple[int, memoryview]]
    ) -> int | None:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | OPEN_FLAGS
        try:
            fd = os.open(self.name, flags, mode, dir_fd=self.dir_fd)
        except FileExistsError:
            return None
        except OSError as err:
            raise file_error(self.label, err) from None
        try:
            prepare_new(self.label, fd, size, mode, pieces)
        except BaseException:
            self.unlink_if(identity(os.fstat(fd)))
            os.close(fd)
            raise
        return fd


def identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


# --- a new file's blocks and bytes; an existing one's blocks -----------------------


def prepare_new(
    label: str, fd: int, size: int, mode: int, pieces: Iterable[tuple[int, memoryview]]
) -> None:
    """Mode, size, blocks and data: with its blocks reserved, writing through the
    mapping cannot meet a full disk (which would be SIGBUS, not an error). Only
    the data is written (pwrite): the rest of the file is its zeros."""
    try:
        os.fchmod(fd, mode)  # the umask applied at creation; --mode means exactly this
        os.ftruncate(fd, size)
        os.posix_fallocate(fd, 0, size)
        for start, piece in pieces:
            pwrite_all(fd, piece, start)
    except OSError as err:
        if err.errno in NO_ROOM:
            raise TooLarge(label, f"{size} bytes: {os.strerror(err.errno).lower()}") from None
        raise from_os_error(label, err) from None


def pwrite_all(fd: int, data: memoryview, at: int) -> None:
    while data:
        done = os.pwrite(fd, data, at)
        data, at = data[done:], at + done


@functools.cache
def libc() -> ctypes.CDLL:
    c = ctypes.CDLL(None, use_errno=True)
    c.fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return c


def reserve(label: str, fd: int, start: int, length: int) -> None:
    """Blocks (on tmpfs, pages) for these bytes of an existing file, before they are
    reached through its mapping: another program may have made it sparse, and a
    hole a full filesystem cannot fill is SIGBUS at that access.

    fallocate(2) itself, not posix_fallocate: where a filesystem has no
    fallocate, glibc's stand-in writes a zero into every block that reads as
    zero, racing whoever writes there meanwhile (a running stream's peer); such
    a filesystem is left to its own rules."""
    if not length:
        return
    code = errno.EINTR
    while code == errno.EINTR:  # a signal meanwhile: its handler runs, then again
        if libc().fallocate64(fd, 0, start, length) == 0:
            return
        code = ctypes.get_errno()
    if code in (errno.EOPNOTSUPP, errno.ENOSYS):
        return
    if code in NO_ROOM:
        raise TooLarge(
            label,
            f"no room for {length} bytes at offset {start} "
            f"({os.strerror(code).lower()}); nothing written",
        )
    raise from_os_error(label, OSError(code, os.strerror(code)))


# --- the mapping -------------------------------------------------------------------


class MappedFile:
    """A regular file mapped MAP_SHARED: `view` spans all of it (read-only unless
    opened writable), `readable` is what recv reads; `created` if this command
    made it. It owns `fd` and the place it was opened in (closed with it).

    A sparse file opened to read is not mapped: `readable` preads it (board's
    FileReader), since reading a hole through a mapping takes a page on tmpfs,
    SIGBUS when it is full, while pread gives its zeros without one."""

    def __init__(self, place: Place, fd: int, writable: bool, created: bool = False) -> None:
        self.place = place
        self.label = place.label
        self.fd = fd
        self.created = created
        st = os.fstat(fd)
        self.identity = identity(st)
        self.mapping: mmap.mmap | None = None
        self.view = memoryview(b"")
        self.readable: Readable = self.view
        if not writable and st.st_blocks * 512 < st.st_size:
            from ipctool_plugins.shm.board import FileReader

            self.readable = FileReader(fd, st.st_size)
        elif st.st_size:
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            try:
                self.mapping = mmap.mmap(fd, st.st_size, mmap.MAP_SHARED, access=access)
            except OSError as err:
                os.close(fd)
                raise from_os_error(place.label, err) from None
            self.view = memoryview(self.mapping)
            if not writable:
                self.view = self.view.toreadonly()
            self.readable = self.view

    @property
    def size(self) -> int:
        return len(self.readable)

    @property
    def address(self) -> int:
        assert self.mapping is not None
        return ctypes.addressof(ctypes.c_char.from_buffer(self.mapping))

    def reserve(self, start: int, length: int) -> None:
        reserve(self.label, self.fd, start, length)

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
        self.place.close()

    def still_there(self) -> bool:
        """The name still names this file, in the directory it was opened in."""
        return self.place.names(self.identity)

    def remove(self) -> None:
        """Unlink the name if it still names this file (not one put there since)."""
        self.place.unlink_if(self.identity)


def lstat_regular(path: str) -> os.stat_result:
    """What is at the path, if it is a regular file; every other type is refused."""
    with Place(path) as place:
        return place.regular()


def unlink_regular(path: str, file: tuple[object, object]) -> bool:
    """Unlink the regular file at the path if it is still this one (device, inode)."""
    with Place(path) as place:
        if identity(place.regular()) != file:
            return False
        os.unlink(place.name, dir_fd=place.dir_fd)
        return True


def open_file(path: str, writable: bool) -> MappedFile:
    place = Place(path)
    try:
        return MappedFile(place, place.open(writable), writable)
    except BaseException:
        place.close()
        raise


def open_or_create(path: str, size: int, mode: int) -> MappedFile:
    """The file, created with `size` bytes if nothing is at the path."""
    place = Place(path)
    try:
        for _ in range(10):  # made and removed by others meanwhile: look again
            try:
                return MappedFile(place, place.open(writable=True), writable=True)
            except NotFound:
                pass
            fd = place.create(size, mode)
            if fd is not None:
                return MappedFile(place, fd, writable=True, created=True)
        raise NotFound(path, "appeared and vanished repeatedly while it was opened")
    except BaseException:
        place.close()
        raise
