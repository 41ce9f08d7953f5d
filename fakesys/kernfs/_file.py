"""Open files and the operations behind them: text attributes, binary attributes, and the
base class for files with their own semantics (device nodes, /dev/kmsg).

The rules are those of fs/kernfs/file.c and fs/sysfs/file.c:

* A text attribute's ``show()`` runs once per open, at offset 0, into a PAGE_SIZE buffer, as
  seq_file does; later reads are served from that buffer, and a read at offset 0 runs it again.
  Output of PAGE_SIZE bytes or more is cut to PAGE_SIZE - 1 with a "bad count" warning.
* Each write(2) is cut to PAGE_SIZE and handed to ``store()`` once; its return value is what
  write(2) returns, so a store may make a short write. A zero-length write never reaches it.
* A binary attribute is read and written at the caller's offset, at most PAGE_SIZE per call;
  with a nonzero size, reads stop at it and writes beyond it fail with EFBIG.
* Every callback runs under an active reference: once the node is removed, read and write on
  a handle that is still open fail with ENODEV.
* sysfs opens check the mode and the presence of show/store even for root
  (KERNFS_ROOT_EXTRA_OPEN_PERM_CHECK): ``cat bind`` is EACCES.
"""

from __future__ import annotations

import contextvars
import errno
import os
import select
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from ._errors import ErrnoError
from ._node import KernfsNode, NodeKind, run_active, run_active_async

PAGE_SIZE = 4096

# DEFAULT_POLLMASK in include/linux/poll.h
DEFAULT_POLLMASK = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM
POLL_CHANGED = select.POLLERR | select.POLLPRI


class Caller(NamedTuple):
    """The process on whose behalf a callback runs: the opener for I/O on a handle (FUSE tells
    read and write nothing about their caller), the requester for everything else. A tuple:
    one is made for every open(2)."""

    pid: int
    uid: int = 0
    gid: int = 0


current_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "current_caller", default=None
)


class OpenFile:
    """One open(2) of a file: what ``struct kernfs_open_file`` holds."""

    __slots__ = ("buffer", "caller", "event", "flags", "node", "ops", "private")

    def __init__(self, node: KernfsNode, flags: int, caller: Caller) -> None:
        assert node.ops is not None
        self.node = node
        self.ops: FileOps = node.ops
        self.flags = flags
        self.caller = caller
        self.event = 0
        self.buffer: bytes | None = None
        self.private: object = None

    @property
    def readable(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_RDONLY, os.O_RDWR)

    @property
    def writable(self) -> bool:
        return (self.flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)

    @property
    def nonblocking(self) -> bool:
        return bool(self.flags & os.O_NONBLOCK)

    async def read(self, offset: int, size: int) -> bytes:
        return await self.ops.read(self, offset, size)

    async def write(self, offset: int, data: bytes) -> int:
        return await self.ops.write(self, offset, data)

    def poll(self) -> int:
        return self.ops.poll(self)

    async def release(self) -> None:
        await self.ops.release(self)


class FileOps:
    """What the owner of a file does when it is opened, read, written, polled and closed.

    The base class answers EINVAL to reads and writes; subclasses override what they support.
    ``may_block`` marks files whose reads can wait for an event, which the FUSE adapter makes
    interruptible; ``seekable`` is False for stream-like files such as device nodes.
    """

    __slots__ = ()
    may_block = False
    seekable = True
    extra_open_perm_check = False

    @property
    def can_read(self) -> bool:
        return True

    @property
    def can_write(self) -> bool:
        return True

    async def open(self, of: OpenFile) -> None:
        """Called once the permission checks passed; may raise :class:`ErrnoError`."""

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        raise ErrnoError(errno.EINVAL)

    async def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        raise ErrnoError(errno.EINVAL)

    def poll(self, of: OpenFile) -> int:
        return DEFAULT_POLLMASK

    async def release(self, of: OpenFile) -> None:
        """The last reference to the open file is gone. It cannot fail."""


async def open_file(node: KernfsNode, flags: int, caller: Caller) -> OpenFile:
    """open(2) of a file node (kernfs_fop_open())."""
    if node.kind is not NodeKind.FILE:
        raise ErrnoError(errno.EISDIR if node.kind is NodeKind.DIR else errno.ELOOP)
    if not node.active:
        raise ErrnoError(errno.ENODEV)
    ops = node.ops
    assert ops is not None
    of = OpenFile(node, flags, caller)
    if ops.extra_open_perm_check:
        if of.writable and (not node.mode & 0o222 or not ops.can_write):
            raise ErrnoError(errno.EACCES)
        if of.readable and (not node.mode & 0o444 or not ops.can_read):
            raise ErrnoError(errno.EACCES)
    await ops.open(of)
    return of


def kernfs_generic_poll(of: OpenFile) -> int:
    """POLLERR|POLLPRI once the file changed (sysfs_notify()) since ``of`` last read it, or
    once it is removed; a reader sets ``of.event`` when it reads."""
    if not of.node.active or of.event != of.node.event:
        return DEFAULT_POLLMASK | POLL_CHANGED
    return DEFAULT_POLLMASK


class TextAttribute(FileOps):
    """A text attribute's semantics; subclasses say what ``show()`` and ``store()`` do.

    ``show()`` returns the text (what sysfs_emit() would write); ``store()`` gets the bytes of
    one write and returns how many it consumed, or raises :class:`ErrnoError`. Without a show
    or a store, a read or write that gets past the open-time check fails with EIO
    (dev_attr_show(), dev_attr_store()).
    """

    __slots__ = ()
    extra_open_perm_check = True

    def show(self) -> str:
        raise ErrnoError(errno.EIO)

    async def store(self, data: bytes) -> int:
        raise ErrnoError(errno.EIO)

    @property
    def show_name(self) -> str:
        """The show function's name, for the kernel's warnings."""
        return "show"

    def _fill(self, of: OpenFile) -> bytes:
        data = self.show().encode()
        if len(data) >= PAGE_SIZE:
            of.node.root.warn(f"fill_read_buffer: {self.show_name}+0x0/0x40 returned bad count")
            data = data[: PAGE_SIZE - 1]
        of.event = of.node.event
        return data

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        def serve() -> bytes:
            if offset == 0 or of.buffer is None:
                of.buffer = self._fill(of)
            return of.buffer[offset : offset + size]

        return run_active(of.node, serve)

    async def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        data = data[:PAGE_SIZE]
        if not data:
            return 0
        if not self.can_write:
            raise ErrnoError(errno.EIO)
        return await run_active_async(of.node, lambda: self.store(data))

    def poll(self, of: OpenFile) -> int:
        return kernfs_generic_poll(of)


ShowFn = Callable[[], str]
StoreFn = Callable[[bytes], Awaitable[int]]


class Attribute(TextAttribute):
    """A text attribute made of two functions, ``show()`` and ``store(data)``.

    ``sysfs`` selects kernfs's open-time permission check; procfs files (``sysfs=False``) leave
    that to the mode bits.
    """

    __slots__ = ("_show", "_store", "extra_open_perm_check")

    def __init__(
        self,
        show: ShowFn | None = None,
        store: StoreFn | None = None,
        *,
        sysfs: bool = True,
    ) -> None:
        self._show = show
        self._store = store
        self.extra_open_perm_check = sysfs

    @property
    def can_read(self) -> bool:
        return self._show is not None

    @property
    def can_write(self) -> bool:
        return self._store is not None

    @property
    def show_name(self) -> str:
        return getattr(self._show, "__name__", "show")

    def show(self) -> str:
        if self._show is None:
            raise ErrnoError(errno.EIO)
        return self._show()

    async def store(self, data: bytes) -> int:
        if self._store is None:
            raise ErrnoError(errno.EIO)
        return await self._store(data)


BinReadFn = Callable[[int, int], Awaitable[bytes]]
BinWriteFn = Callable[[int, bytes], Awaitable[int]]


class BinAttribute(FileOps):
    """A binary attribute (``struct bin_attribute``): ``read(offset, count)`` and
    ``write(offset, data)`` see the real file offset. ``size`` 0 means unbounded."""

    __slots__ = ("read_fn", "size", "write_fn")
    extra_open_perm_check = True

    def __init__(
        self, read: BinReadFn | None = None, write: BinWriteFn | None = None, size: int = 0
    ) -> None:
        self.read_fn = read
        self.write_fn = write
        self.size = size

    @property
    def can_read(self) -> bool:
        return self.read_fn is not None

    @property
    def can_write(self) -> bool:
        return self.write_fn is not None

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        # kernfs_file_read_iter() hands at most PAGE_SIZE to one call; sysfs_kf_bin_read()
        # clamps to the attribute's size when it has one.
        count = min(size, PAGE_SIZE)
        if self.size:
            if offset >= self.size:
                return b""
            count = min(count, self.size - offset)
        read_fn = self.read_fn
        if read_fn is None:
            raise ErrnoError(errno.EIO)
        if count == 0:
            return b""
        return await run_active_async(of.node, lambda: read_fn(offset, count))

    async def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        data = data[:PAGE_SIZE]
        if self.size:
            if offset >= self.size:
                raise ErrnoError(errno.EFBIG)
            data = data[: self.size - offset]
        if not data:
            return 0
        write_fn = self.write_fn
        if write_fn is None:
            raise ErrnoError(errno.EIO)
        return await run_active_async(of.node, lambda: write_fn(offset, data))
