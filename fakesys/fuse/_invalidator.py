"""Keeping the FUSE kernel's caches in step with the tree.

The kernel caches entries and attributes for an hour (``CACHE_TIMEOUT``), because the daemon
makes every change itself and tells the kernel exactly what changed:

* a removed node: its entry is dropped, so the path is ENOENT at once. A directory or a
  symlink is announced as deleted (the kernel marks the inode dead, so a lookup through a held
  directory fd fails too). A directory that cannot be marked dead (something inside is open,
  or is a cwd: "Directory not empty") has been dropped all the same, which is what path walks
  need. A file is only dropped: announcing it as deleted takes its inode lock, which the
  write(2) that removed it (PCI ``remove``) holds until it returns.
* a directory added or removed: the parent's attributes (its link count).

Additions need nothing: a failed lookup is not cached (no negative entries).

A write(2) returns once the notices submitted before it ended reached the kernel (its own,
and those of work it woke, like an expired dump), so the next path walk sees the change. No
notice waits for anything a client can hold, so a write never waits for another one. The
notices are written to /dev/fuse from a worker thread, never from the trio thread:
``invalidate_entry`` waits for in-flight operations on the directory, and one of those may be
waiting for the trio thread. Before the session is closed, :meth:`Invalidator.close` waits for
the notice being written, if any, and stops the others: libfuse must not be handed a session
that is being destroyed.
"""

from __future__ import annotations

import errno
import logging
import math
import threading
from dataclasses import dataclass

import pyfuse3
import trio

from ..kernfs import KernfsNode, NodeKind, TreeListener

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _EntryGone:
    parent: int
    name: bytes
    ino: int
    kind: NodeKind


_AttrChanged = int


class Invalidator(TreeListener):
    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[_EntryGone | _AttrChanged](math.inf)
        self._limiter = trio.CapacityLimiter(1)
        #: Held while a notice is written; once closed, none is.
        self._writing = threading.Lock()
        self._closed = False
        self.submitted = 0
        self._done = 0
        self._progress = trio.Event()

    def removed(self, parent: KernfsNode, node: KernfsNode) -> None:
        self._submit(_EntryGone(parent.ino, node.name.encode(), node.ino, node.kind))
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
                self._write, item, limiter=self._limiter, abandon_on_cancel=True
            )
            self._done += 1
            self._progress.set()
            self._progress = trio.Event()

    def _write(self, item: _EntryGone | _AttrChanged) -> None:
        with self._writing:
            if not self._closed:
                _apply(item)

    def close(self, timeout: float) -> None:
        """Write no more notices. Waits up to ``timeout`` for the one being written: one that
        waits for a request the stopped session will never answer ends only when the session
        is closed."""
        writing_done = self._writing.acquire(timeout=timeout)
        self._closed = True
        if writing_done:
            self._writing.release()

    async def flush(self, upto: int, timeout: float) -> None:
        """Wait until the first ``upto`` notices reached the kernel (or ``timeout``)."""
        with trio.move_on_after(timeout):
            while self._done < upto:
                await self._progress.wait()


def _apply(item: _EntryGone | _AttrChanged) -> None:
    try:
        if isinstance(item, _AttrChanged):
            pyfuse3.invalidate_inode(item, attr_only=True)
        elif item.kind is NodeKind.FILE:
            pyfuse3.invalidate_entry(item.parent, item.name)
        else:
            pyfuse3.invalidate_entry(item.parent, item.name, deleted=item.ino)
    except FileNotFoundError:
        pass  # the kernel never looked it up: nothing to drop
    except OSError as e:
        # fuse_reverse_inval_entry() drops the entry first, then finds that a directory whose
        # dentries are still in use (an open file inside, a cwd) cannot be marked dead.
        if e.errno != errno.ENOTEMPTY:
            log.warning("invalidation of %r failed: %s", item, e)
