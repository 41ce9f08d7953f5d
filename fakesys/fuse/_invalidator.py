"""Keeping the FUSE kernel's caches in step with the tree.

Entries and attributes are cached by the kernel for a second; every removal is announced to it
at once so that a path that went away is ENOENT right after the write(2) that removed it, and
``faccessat`` on a held directory fd sees the change. The notifications are written to
/dev/fuse from a worker thread, never from the trio thread: ``invalidate_entry`` waits for
in-flight operations on the directory, and one of those may be waiting for the trio thread.
"""

from __future__ import annotations

import logging
import math

import pyfuse3
import trio

from ..kernfs import KernfsNode, NodeKind, TreeListener

log = logging.getLogger(__name__)

_EntryGone = tuple[int, bytes, int]
_AttrChanged = int


class Invalidator(TreeListener):
    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[_EntryGone | _AttrChanged](math.inf)
        self._limiter = trio.CapacityLimiter(1)
        self.submitted = 0
        self._done = 0
        self._progress = trio.Event()

    def removed(self, parent: KernfsNode, node: KernfsNode) -> None:
        self._submit((parent.ino, node.name.encode(), node.ino))
        if node.kind is NodeKind.DIR:
            self._submit(parent.ino)

    def added(self, node: KernfsNode) -> None:
        # A new subdirectory changes the parent's link count.
        if node.kind is NodeKind.DIR and node.parent is not None:
            self._submit(node.parent.ino)

    def _submit(self, item: _EntryGone | _AttrChanged) -> None:
        self.submitted += 1
        self._send.send_nowait(item)

    async def run(self) -> None:
        async for item in self._receive:
            await trio.to_thread.run_sync(
                _apply, item, limiter=self._limiter, abandon_on_cancel=True
            )
            self._done += 1
            self._progress.set()
            self._progress = trio.Event()

    async def flush(self, upto: int, timeout: float) -> None:
        """Wait until the first ``upto`` notifications reached the kernel (or ``timeout``)."""
        with trio.move_on_after(timeout):
            while self._done < upto:
                await self._progress.wait()


def _apply(item: _EntryGone | _AttrChanged) -> None:
    try:
        if isinstance(item, tuple):
            parent, name, ino = item
            pyfuse3.invalidate_entry(parent, name, deleted=ino)
        else:
            pyfuse3.invalidate_inode(item, attr_only=True)
    except FileNotFoundError:
        pass  # the kernel never looked it up: nothing to drop
    except OSError as e:
        log.warning("invalidation of %r failed: %s", item, e)
