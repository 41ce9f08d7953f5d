"""A /dev outside the tree kept in step with the tree's ``dev/``, as devtmpfs is with the
devices: ``fakesys run``'s /dev.

That /dev is a tmpfs holding the host's standard nodes (bound in by :mod:`fakesys.run`). Each
node of the tree's ``dev/`` is bound over a file of the same name there when it is created, and
detached when it goes, each time before the uevent that announces it: a program that hears
``add`` can open the node at once, and one that hears ``remove`` no longer finds it, as on a real
machine. Directories a node needs (``dri/``) are made for it and removed once empty, as
devtmpfs does. A node named like a host entry hides it while it exists.

The daemon keeps it because it shares the command's mount namespace and hears of each node
first. Every mount call runs on a worker thread: the kernel resolves the source path in the
tree, which takes a FUSE request that only the trio thread can answer; and before a bind, the
cache notices sent so far must have reached the kernel, or a name reused by a new node could
still resolve to the removed one.

Limitations: a node whose directory is one of the host's bound in (``pts/``, ``shm/``) is not
shown, with a warning: nothing is ever created in a host directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ._mounts import bind, detach
from .kernfs import NodeKind

if TYPE_CHECKING:
    from .fuse import Invalidator
    from .kernel import Kernel

log = logging.getLogger(__name__)

#: How long a bind waits for the cache notices before it goes ahead anyway.
NOTICE_TIMEOUT = 2.0


class DevMirror:
    """Binds the nodes of ``tree_dev`` (the mount's ``dev/``) into ``target``."""

    def __init__(self, tree_dev: Path, target: Path, invalidator: Invalidator) -> None:
        self.tree_dev = tree_dev
        self.target = target
        self._invalidator = invalidator
        self._limiter = trio.CapacityLimiter(1)  # one mount call at a time, in order
        self._bound: set[str] = set()
        #: Files and directories made in ``target`` for the nodes, to be removed with them.
        self._made: set[Path] = set()

    async def start(self, kernel: Kernel) -> None:
        """Follow the tree from now on, then show the nodes it already has."""
        kernel.devtmpfs_mirrors.append(self)
        existing = sorted(
            node.path().removeprefix(kernel.dev_kn.path() + "/")
            for node in kernel.dev_kn.subtree()
            if node.kind is NodeKind.FILE
        )
        for path in existing:
            await self.node_created(path)

    async def node_created(self, path: str) -> None:
        if path in self._bound:
            return
        await self._invalidator.flush(self._invalidator.submitted, NOTICE_TIMEOUT)
        await trio.to_thread.run_sync(self._bind, path, limiter=self._limiter)

    async def node_deleted(self, path: str) -> None:
        if path in self._bound:
            await trio.to_thread.run_sync(self._unbind, path, limiter=self._limiter)

    def _bind(self, path: str) -> None:
        target = self.target / path
        try:
            self._make_dirs(target.parent)
            if not os.path.lexists(target):
                target.touch(0o600)
                self._made.add(target)
            bind(self.tree_dev / path, target, flags=0)
        except OSError as e:
            log.warning("/dev/%s not shown: %s", path, e.strerror or e)
            self._remove_made(target)
            return
        self._bound.add(path)

    def _make_dirs(self, directory: Path) -> None:
        """Make the missing directories down to ``directory``, in ``target``'s own file
        system only."""
        missing = []
        while not os.path.lexists(directory):
            missing.append(directory)
            directory = directory.parent
        if os.stat(directory).st_dev != os.stat(self.target).st_dev:
            raise OSError(0, f"{directory} is the host's")
        for made in reversed(missing):
            made.mkdir(0o755)
            self._made.add(made)

    def _unbind(self, path: str) -> None:
        self._bound.discard(path)
        target = self.target / path
        try:
            detach(target)
        except OSError as e:
            log.warning("/dev/%s not detached: %s", path, e.strerror)
            return
        self._remove_made(target)

    def _remove_made(self, entry: Path) -> None:
        """Remove ``entry`` and then its empty parents, those made here."""
        while entry in self._made:
            with contextlib.suppress(OSError):
                if entry.is_dir():
                    entry.rmdir()
                else:
                    entry.unlink()
            if os.path.lexists(entry):
                return
            self._made.discard(entry)
            entry = entry.parent
