"""The pyfuse3 operations: each FUSE request becomes a kernfs call.

Rules kept here (each one avoids a way to wedge or kill the mount):

* Every handler is guarded: an errno from the tree becomes that errno, anything unexpected is
  logged and answered with EIO. pyfuse3 lets any other exception end the session.
* Files are served with direct_io and no page cache, so every read reaches the tree and the
  size reported by stat (4096 for a text attribute, 0 for a dump) does not cut reads short.
  Not even an attribute that never changes can be kept in the page cache: there a read
  stops at the cached size, and a read shorter than the page (any text shorter than 4096
  bytes) makes the kernel shrink that size to the text's length, which `ls -l` and
  `stat -c %s` then show, and sysfs says 4096.
* Entries and attributes are cached by the kernel for an hour, and every change that stat or a
  path walk could see is announced at once by the :class:`~._invalidator.Invalidator`; a
  write(2) returns only after the notices submitted until then reached the kernel.
* Lookup counts are kept, so a node that was removed stays answerable (getattr) until the
  kernel forgets it, and inode numbers are never reused.
* A read that may block (``FileOps.may_block``) waits in slices and watches the opener for a
  pending signal, answering EINTR, because pyfuse3 cannot see FUSE_INTERRUPT.
* ``flush`` is not implemented (ENOSYS), so the kernel stops sending it.
* The user who mounted the tree plays root's part in it, as in a user namespace that maps
  them to 0: the nodes root owns are shown as theirs, and their requests reach the engine as
  uid 0, so the root-only checks there (PCI config beyond 64 bytes, writes to ``tainted``)
  let them through. Mounted by root, nothing changes.

Limitations: read and write requests carry no caller, so I/O on a handle is attributed to the
process that opened it; lseek, ioctl and file locks do not reach the file system.
"""

from __future__ import annotations

import array
import bisect
import errno
import functools
import itertools
import logging
import os
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3

from ..kernfs import (
    Caller,
    ErrnoError,
    KernfsNode,
    KernfsRoot,
    NodeKind,
    OpenFile,
    TreeListener,
    current_caller,
    open_file,
)
from ._interrupt import InterruptWatcher
from ._invalidator import Invalidator

log = logging.getLogger(__name__)

#: Seconds the kernel may cache entries and attributes; every change is invalidated explicitly,
#: so this only bounds the damage of a notice the kernel could not take.
CACHE_TIMEOUT = 3600.0
#: How long a write(2) waits for the notices it caused before it returns anyway: a safety net,
#: as no notice waits for anything a client can hold for long.
FLUSH_TIMEOUT = 2.0

P = ParamSpec("P")
R = TypeVar("R")


def guarded(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except ErrnoError as e:
            raise pyfuse3.FUSEError(e.errno) from None
        except Exception:
            log.exception("%s%r failed", fn.__name__, args[1:])
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


class acting_for:
    """Run a callback on behalf of ``caller``. A class, not a generator-based context
    manager: every open, read, write and release enters one."""

    __slots__ = ("_caller", "_token")

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def __enter__(self) -> None:
        self._token = current_caller.set(self._caller)

    def __exit__(self, *exc_info: object) -> None:
        current_caller.reset(self._token)


def _in_tree(real: int, owner: int) -> int:
    """A uid or gid of a request as the tree sees it: the owner's is root's."""
    return 0 if real == owner else real


def _shown(in_tree: int, owner: int) -> int:
    """A uid or gid of the tree as stat shows it: root's is the owner's."""
    return owner if in_tree == 0 else in_tree


class Operations(pyfuse3.Operations, TreeListener):
    supports_dot_lookup = False

    def __init__(
        self,
        tree: KernfsRoot,
        invalidator: Invalidator,
        owner: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self._tree = tree
        self._invalidator = invalidator
        #: The uid and gid that play root's part (the mounting user's by default).
        self._owner_uid, self._owner_gid = owner or (os.getuid(), os.getgid())
        #: The kernel's lookup count of every inode, by number (0: unknown to the kernel), and
        #: the nodes it knows that left the tree: those stay answerable (getattr) until the
        #: kernel forgets them. An array: a big tree has hundreds of thousands of inodes.
        self._lookups = array.array("Q")
        self._zombies: dict[int, KernfsNode] = {}
        self._handles: dict[int, OpenFile] = {}
        self._dirs: dict[int, list[KernfsNode]] = {}
        self._poll_handles: dict[int, dict[int, pyfuse3.PollHandle]] = {}
        self._next_fh = itertools.count(1)
        #: Makes blocking operations interruptible; stopped at shutdown, so that blocked reads
        #: give up with ENODEV and pyfuse3.main() can return.
        self.interrupts = InterruptWatcher()
        tree.listeners.append(invalidator)
        tree.listeners.append(self)

    # -- inode bookkeeping --

    def _node(self, ino: int) -> KernfsNode:
        node = self._tree.inode(ino) or self._zombies.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _remember(self, node: KernfsNode) -> None:
        lookups = self._lookups
        if node.ino >= len(lookups):
            lookups.frombytes(bytes(lookups.itemsize * max(node.ino + 1, 2 * len(lookups))))
        lookups[node.ino] += 1

    def _attr(self, node: KernfsNode) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = node.ino
        attr.st_mode = node.st_mode
        attr.st_nlink = node.nlink
        attr.st_uid = _shown(node.uid, self._owner_uid)
        attr.st_gid = _shown(node.gid, self._owner_gid)
        attr.st_size = node.size
        attr.st_blksize = 4096
        attr.st_blocks = 0
        attr.st_atime_ns = node.mtime_ns
        attr.st_mtime_ns = node.mtime_ns
        attr.st_ctime_ns = node.ctime_ns
        attr.entry_timeout = CACHE_TIMEOUT
        attr.attr_timeout = CACHE_TIMEOUT
        return attr

    def _caller(self, ctx: pyfuse3.RequestContext) -> Caller:
        return Caller(
            ctx.pid, _in_tree(ctx.uid, self._owner_uid), _in_tree(ctx.gid, self._owner_gid)
        )

    # -- TreeListener: keep removed nodes the kernel knows, wake pollers --

    def unlinked(self, node: KernfsNode) -> None:
        if node.ino < len(self._lookups) and self._lookups[node.ino]:
            self._zombies[node.ino] = node

    def changed(self, node: KernfsNode) -> None:
        for handle in self._poll_handles.pop(node.ino, {}).values():
            handle.notify()

    def drop_poll_handles(self) -> None:
        """Forget every stored poll handle; call before the session is closed."""
        self._poll_handles.clear()

    # -- metadata --

    @guarded
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_inode)
        child = parent.lookup(os.fsdecode(name)) if parent.kind is NodeKind.DIR else None
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        self._remember(child)
        return self._attr(child)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        lookups = self._lookups
        for ino, nlookup in inode_list:
            if ino >= len(lookups):
                continue
            if lookups[ino] <= nlookup:
                lookups[ino] = 0
                self._zombies.pop(ino, None)
            else:
                lookups[ino] -= nlookup

    @guarded
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(self._node(inode))

    @guarded
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        # kernfs_iop_setattr(): size changes are ignored (so O_TRUNC opens work); the owner
        # and mode may be changed by a privileged caller.
        node = self._node(inode)
        if fields.update_mode or fields.update_uid or fields.update_gid:
            if self._caller(ctx).uid != 0:
                raise pyfuse3.FUSEError(errno.EPERM)
            if fields.update_mode:
                node.mode = attr.st_mode & 0o7777
            if fields.update_uid:
                node.uid = _in_tree(attr.st_uid, self._owner_uid)
            if fields.update_gid:
                node.gid = _in_tree(attr.st_gid, self._owner_gid)
        if fields.update_mtime:
            node.mtime_ns = attr.st_mtime_ns
        return self._attr(node)

    @guarded
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self._node(inode)
        if node.kind is not NodeKind.LINK:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(node.link_target())

    @guarded
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        stat = pyfuse3.StatvfsData()
        stat.f_bsize = 4096
        stat.f_frsize = 4096
        stat.f_namemax = 255
        return stat

    # -- what the tree does not allow --
    # kernfs has no create, mkdir, unlink, rmdir, symlink, link, mknod or rename: the VFS
    # answers EACCES for an O_CREAT open (lookup_open()) and EPERM for the rest.

    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        raise pyfuse3.FUSEError(errno.EACCES)

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        raise pyfuse3.FUSEError(errno.EPERM)

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        raise pyfuse3.FUSEError(errno.EPERM)

    # -- directories --

    @guarded
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        node = self._node(inode)
        if node.kind is not NodeKind.DIR:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        fh = next(self._next_fh)
        # The children as of opendir(), in creation order, which is inode order: the inode
        # number is a stable offset, found by bisection, so a listing of n entries costs O(n)
        # over all its readdir calls and never skips or repeats one.
        self._dirs[fh] = list(node.children.values())
        return fh

    @guarded
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        children = self._dirs[fh]
        start = bisect.bisect_right(children, start_id, key=lambda child: child.ino)
        for child in itertools.islice(children, start, None):
            if not child.active:
                continue
            if not pyfuse3.readdir_reply(
                token, os.fsencode(child.name), self._attr(child), child.ino
            ):
                break
            self._remember(child)

    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    # -- files --

    @guarded
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self._node(inode)
        caller = self._caller(ctx)
        with acting_for(caller):
            of = await open_file(node, flags, caller)
        fh = next(self._next_fh)
        self._handles[fh] = of
        return pyfuse3.FileInfo(
            fh=fh, direct_io=True, keep_cache=False, nonseekable=not of.ops.seekable
        )

    @guarded
    async def read(self, fh: int, off: int, size: int) -> bytes:
        of = self._handles[fh]
        with acting_for(of.caller):
            if of.ops.may_block:
                return await self.interrupts.call(of.caller.pid, lambda: of.read(off, size))
            return await of.read(off, size)

    @guarded
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        of = self._handles[fh]
        with acting_for(of.caller):
            if of.ops.may_block:
                written = await self.interrupts.call(of.caller.pid, lambda: of.write(off, buf))
            else:
                written = await of.write(off, buf)
        await self._invalidator.flush(self._invalidator.submitted, FLUSH_TIMEOUT)
        return written

    @guarded
    async def poll(
        self,
        inode: int,
        fh: int,
        ph: pyfuse3.PollHandle | None,
        ctx: pyfuse3.RequestContext,
    ) -> int:
        of = self._handles[fh]
        if ph is not None:
            self._poll_handles.setdefault(of.node.ino, {})[fh] = ph
        return of.poll()

    async def release(self, fh: int) -> None:
        of = self._handles.pop(fh, None)
        if of is None:
            return
        handles = self._poll_handles.get(of.node.ino)
        if handles is not None:
            handles.pop(fh, None)
        try:
            with acting_for(of.caller):
                await of.release()
        except Exception:
            log.exception("release of %r failed", of.node)
