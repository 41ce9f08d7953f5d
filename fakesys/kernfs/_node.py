"""Nodes of the tree: directories, files and symlinks, with kernfs's active references.

A node is *active* from creation until :func:`remove` deactivates it. Every callback into a
file's owner runs under an active reference (:meth:`KernfsNode.get_active`); removal first
deactivates the whole subtree, so new lookups, opens and I/O fail, then waits until the
references in flight are dropped, and only then unlinks the nodes. That is the order of
``__kernfs_remove()`` in fs/kernfs/dir.c, and it is what lets the owner free the state behind a
callback as soon as removal returns.
"""

from __future__ import annotations

import contextvars
import enum
import errno as _errno
import stat
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeVar

import trio

from ._errors import ErrnoError

if TYPE_CHECKING:
    from ._file import FileOps


T = TypeVar("T")


class NodeKind(enum.Enum):
    DIR = stat.S_IFDIR
    FILE = stat.S_IFREG
    LINK = stat.S_IFLNK


ROOT_INO = 1
_NO_CHILDREN: dict[str, KernfsNode] = {}
# kernfs_get_active() fails once this is added to the count (KN_DEACTIVATED_BIAS).
_DEACTIVATED_BIAS = -(1 << 30)
# Inode times come from the coarse clock (current_time()), which moves once a jiffy (HZ=250):
# nodes made within one tick share a timestamp, and so one int object.
_TICK_NS = 4_000_000


@dataclass(slots=True)
class KernfsIattrs:
    """What a setattr changed (struct kernfs_iattrs): made only for the nodes it touched."""

    uid: int
    gid: int
    mtime_ns: int


class KernfsNode:
    """One entry of the tree: a :class:`KernfsDir`, :class:`KernfsFile` or :class:`KernfsLink`.

    ``mode`` holds the permission bits only; the file type comes from ``kind``. ``size`` is what
    ``stat`` reports (sysfs: 4096 for text attributes, the bin attribute's size, 0 for
    directories and symlinks). ``subdirs`` counts the child directories, for the link count.
    Owner and modification time are root's and the creation time until a setattr changes
    them. A big tree has hundreds of thousands of nodes, hence the slots, and each kind has
    only the fields it uses; the others read as class attributes.
    """

    __slots__ = ("_active", "ctime_ns", "iattr", "ino", "mode", "name", "parent", "root")

    kind: ClassVar[NodeKind]
    # Only directories have children, only files have operations, a size and an event
    # counter, only symlinks have a target.
    children: dict[str, KernfsNode] = _NO_CHILDREN
    subdirs = 0
    ops: FileOps | None = None
    size = 0
    event = 0
    target: KernfsNode | str | None = None

    def __init__(self, root: KernfsRoot, name: str, mode: int) -> None:
        self.root = root
        self.name = name
        self.mode = mode
        # The next inode number; the table's entry is filled once the node is linked.
        inodes = root._inodes
        self.ino = len(inodes)
        inodes.append(None)
        self.parent: KernfsNode | None = None
        self.ctime_ns = root.stamp()
        self.iattr: KernfsIattrs | None = None
        self._active = 0

    def __repr__(self) -> str:
        return f"<KernfsNode {self.path()!r} ino={self.ino}>"

    # -- active references (fs/kernfs/dir.c kernfs_get_active / kernfs_put_active) --

    @property
    def active(self) -> bool:
        return self._active >= 0

    def get_active(self) -> bool:
        if self._active < 0:
            return False
        self._active += 1
        return True

    def put_active(self) -> None:
        self._active -= 1
        if self._active == _DEACTIVATED_BIAS:
            drained = self.root.draining.pop(self, None)
            if drained is not None:
                drained.set()

    def _deactivate(self) -> None:
        self._active += _DEACTIVATED_BIAS

    async def _drain(self) -> None:
        if self._active != _DEACTIVATED_BIAS:
            await self.root.draining.setdefault(self, trio.Event()).wait()

    # -- tree structure --

    def path(self) -> str:
        parts: list[str] = []
        node: KernfsNode | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def ancestors(self) -> list[KernfsNode]:
        """The chain from the root down to this node, both included."""
        chain: list[KernfsNode] = []
        node: KernfsNode | None = self
        while node is not None:
            chain.append(node)
            node = node.parent
        chain.reverse()
        return chain

    def lookup(self, name: str) -> KernfsNode | None:
        """The active child called ``name``; a node being removed is invisible, as in
        kernfs_iop_lookup()."""
        child = self.children.get(name)
        if child is None or child._active < 0:
            return None
        return child

    def walk(self, path: str) -> KernfsNode | None:
        """Resolve a slash-separated path below this node, without following symlinks."""
        node: KernfsNode | None = self
        for part in path.strip("/").split("/"):
            if not part or node is None:
                continue
            node = node.lookup(part)
        return node

    def subtree(self) -> Iterator[KernfsNode]:
        """This node and everything below it, children before parents."""
        for child in list(self.children.values()):
            yield from child.subtree()
        yield self

    def link_target(self) -> str:
        """The relative target of a symlink, as kernfs_get_target_path() builds it: one ``..``
        per level from the link's directory up to the common ancestor, then down. A link made
        with a target path (a recorded one) reads as that path, whether or not it resolves."""
        assert self.kind is NodeKind.LINK
        assert self.target is not None
        if isinstance(self.target, str):
            return self.target
        assert self.parent is not None
        here = self.parent.ancestors()
        there = self.target.ancestors()
        # The base is searched among the target's strict ancestors, so a link to its own
        # directory reads "../<dir>".
        common = 0
        while common < min(len(here), len(there) - 1) and here[common] is there[common]:
            common += 1
        ups = [".."] * (len(here) - common)
        downs = [node.name for node in there[common:]]
        return "/".join(ups + downs)

    # -- owner and times (kernfs_iattrs) --

    def _iattr(self) -> KernfsIattrs:
        if self.iattr is None:
            self.iattr = KernfsIattrs(0, 0, self.ctime_ns)
        return self.iattr

    @property
    def uid(self) -> int:
        return 0 if self.iattr is None else self.iattr.uid

    @uid.setter
    def uid(self, uid: int) -> None:
        self._iattr().uid = uid

    @property
    def gid(self) -> int:
        return 0 if self.iattr is None else self.iattr.gid

    @gid.setter
    def gid(self, gid: int) -> None:
        self._iattr().gid = gid

    @property
    def mtime_ns(self) -> int:
        return self.ctime_ns if self.iattr is None else self.iattr.mtime_ns

    @mtime_ns.setter
    def mtime_ns(self, mtime_ns: int) -> None:
        self._iattr().mtime_ns = mtime_ns

    @property
    def nlink(self) -> int:
        return 2 + self.subdirs if self.kind is NodeKind.DIR else 1

    @property
    def st_mode(self) -> int:
        return self.kind.value | self.mode

    def notify(self) -> None:
        """kernfs_notify(): tell pollers (a file also bumps its event counter)."""
        for listener in self.root.listeners:
            listener.changed(self)


class KernfsDir(KernfsNode):
    __slots__ = ("children", "subdirs")
    kind = NodeKind.DIR

    def __init__(self, root: KernfsRoot, name: str, mode: int) -> None:
        super().__init__(root, name, mode)
        self.children = {}
        self.subdirs = 0


class KernfsFile(KernfsNode):
    __slots__ = ("event", "ops", "size")
    kind = NodeKind.FILE

    def __init__(self, root: KernfsRoot, name: str, mode: int, ops: FileOps, size: int) -> None:
        super().__init__(root, name, mode)
        self.ops = ops
        self.size = size
        # kernfs_get_open_node() starts the event counter at 1 and an open file's copy at 0, so
        # a poll before the first read reports POLLERR|POLLPRI (fs/kernfs/file.c).
        self.event = 1

    def notify(self) -> None:
        self.event += 1
        super().notify()


class KernfsLink(KernfsNode):
    __slots__ = ("target",)
    kind = NodeKind.LINK

    def __init__(self, root: KernfsRoot, name: str, target: KernfsNode | str) -> None:
        super().__init__(root, name, 0o777)
        self.target = target


class TreeListener:
    """Told about changes so that a cache of the tree (the FUSE kernel's) can be invalidated.

    The default methods do nothing; a listener overrides what it needs.
    """

    def added(self, node: KernfsNode) -> None:
        """``node`` was linked into its parent."""

    def removed(self, parent: KernfsNode, node: KernfsNode) -> None:
        """``node`` was unlinked from ``parent`` (it keeps its name), with its subtree."""

    def unlinked(self, node: KernfsNode) -> None:
        """``node`` left the tree: said of every node of a removed subtree."""

    def changed(self, node: KernfsNode) -> None:
        """``node`` was notified (sysfs_notify) or its attributes changed."""


class KernfsRoot:
    """A tree: the root directory, the listeners and the table of live inodes.

    Inode numbers are never reused: a stale handle or cached dentry can then never be
    confused with a newer node. Inode *n* is entry *n* of the table, None once removed: a
    list costs a quarter of a dict, and a removed node leaves only its empty entry.
    """

    def __init__(
        self,
        warn: Callable[[str], None] | None = None,
        duplicate: Callable[[KernfsNode, str], None] | None = None,
    ) -> None:
        #: Where kernfs's own warnings go (the kernel log, once the engine is attached).
        self.warn: Callable[[str], None] = warn or (lambda message: None)
        #: Told of a name that could not be created because it exists (sysfs_warn_dup()).
        self.duplicate: Callable[[KernfsNode, str], None] = duplicate or (lambda parent, name: None)
        self.listeners: list[TreeListener] = []
        self._inodes: list[KernfsNode | None] = [None]
        #: The nodes whose removal waits for callbacks in flight, and what it waits on.
        self.draining: dict[KernfsNode, trio.Event] = {}
        self._stamp = time.time_ns()
        self.root: KernfsNode = KernfsDir(self, "", 0o755)
        assert self.root.ino == ROOT_INO
        self._inodes[ROOT_INO] = self.root

    def inode(self, ino: int) -> KernfsNode | None:
        """The live node with this inode number."""
        return self._inodes[ino] if 0 < ino < len(self._inodes) else None

    def stamp(self) -> int:
        """The time now, on the coarse clock."""
        now = time.time_ns()
        if now - self._stamp >= _TICK_NS:
            self._stamp = now
        return self._stamp

    def _link(self, parent: KernfsNode, node: KernfsNode) -> KernfsNode:
        if not isinstance(parent, KernfsDir) or parent._active < 0:
            raise ErrnoError(_errno.ENOENT)
        children = parent.children
        if node.name in children:
            self.duplicate(parent, node.name)
            raise ErrnoError(_errno.EEXIST)
        node.parent = parent
        children[node.name] = node
        if isinstance(node, KernfsDir):
            parent.subdirs += 1
        self._inodes[node.ino] = node
        for listener in self.listeners:
            listener.added(node)
        return node

    def create_dir(self, parent: KernfsNode, name: str, mode: int = 0o755) -> KernfsNode:
        return self._link(parent, KernfsDir(self, name, mode))

    def create_file(
        self, parent: KernfsNode, name: str, mode: int, ops: FileOps, size: int = 0
    ) -> KernfsNode:
        return self._link(parent, KernfsFile(self, name, mode, ops, size))

    def create_link(self, parent: KernfsNode, name: str, target: KernfsNode | str) -> KernfsNode:
        return self._link(parent, KernfsLink(self, name, target))

    def mkdir_p(self, path: str) -> KernfsNode:
        node = self.root
        for part in path.strip("/").split("/"):
            child = node.lookup(part)
            node = child if child is not None else self.create_dir(node, part)
        return node

    async def remove(self, node: KernfsNode) -> None:
        """Deactivate ``node`` and its subtree, wait for callbacks in flight, then unlink.

        Removing a node that is already being removed waits for nothing more and returns.
        """
        nodes = self._deactivate(node)
        for n in nodes:
            await n._drain()
        self._unlink(node, nodes)

    def remove_link(self, node: KernfsNode) -> None:
        """Remove a symlink at once: no callback ever runs on one, so there is nothing to
        wait for (sysfs_remove_link() from a release function)."""
        assert node.kind is NodeKind.LINK
        self._unlink(node, self._deactivate(node))

    def _deactivate(self, node: KernfsNode) -> list[KernfsNode]:
        nodes = [n for n in node.subtree() if n.active]
        for n in nodes:
            n._deactivate()
        return nodes

    def _unlink(self, node: KernfsNode, nodes: list[KernfsNode]) -> None:
        for n in nodes:
            parent = n.parent
            if isinstance(parent, KernfsDir) and parent.children.get(n.name) is n:
                del parent.children[n.name]
                if n.kind is NodeKind.DIR:
                    parent.subdirs -= 1
            self._inodes[n.ino] = None
            for listener in self.listeners:
                listener.unlinked(n)
        # Only the top of the subtree is announced: dropping a directory from a cache drops
        # what is below it.
        top_parent = node.parent
        if nodes and nodes[-1] is node and top_parent is not None:
            for listener in self.listeners:
                listener.removed(top_parent, node)

    async def remove_self(self, node: KernfsNode) -> bool:
        """Remove the node whose store callback is running (kernfs_remove_self()).

        The caller's own active reference is given up first, or removal would wait for it
        forever; the write path then does not drop it again. Returns whether this call did the
        removal, so that of two concurrent writers only one goes on to act on it.
        """
        ref = current_active_ref.get()
        if ref is None or ref.node is not node or ref.broken:
            raise RuntimeError("remove_self() outside a callback of that node")
        ref.broken = True
        node.put_active()
        if not node.active:
            return False
        await self.remove(node)
        return True


@dataclass(slots=True)
class ActiveRef:
    """The active reference held by the callback running in this task."""

    node: KernfsNode
    broken: bool = False


current_active_ref: contextvars.ContextVar[ActiveRef | None] = contextvars.ContextVar(
    "current_active_ref", default=None
)


def run_active(node: KernfsNode, fn: Callable[[], T]) -> T:
    """Run a synchronous callback under an active reference on ``node``: ENODEV once the node
    is deactivated."""
    if not node.get_active():
        raise ErrnoError(_errno.ENODEV)
    try:
        return fn()
    finally:
        node.put_active()


async def run_active_async(node: KernfsNode, fn: Callable[[], Awaitable[T]]) -> T:
    """Like :func:`run_active` for a callback that may wait (a store that unbinds a driver)."""
    if not node.get_active():
        raise ErrnoError(_errno.ENODEV)
    ref = ActiveRef(node)
    token = current_active_ref.set(ref)
    try:
        return await fn()
    finally:
        current_active_ref.reset(token)
        if not ref.broken:
            node.put_active()
