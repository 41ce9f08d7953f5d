"""Heap objects with an allocation state, so that a use after free is seen, not suffered.

kmalloc() hands out an :class:`Object` with a kernel-looking address in the kmalloc cache of
its size. kfree() marks it freed and records who freed it; an access through
:meth:`Object.access` afterwards is reported by :mod:`.kasan` exactly where a KASAN kernel
would report it, and tells the caller, which then behaves as the buggy kernel would (reads
garbage, writes into freed memory). Addresses are never reused, so a report always names one
object.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import stacktrace
from .sched import Task, current

if TYPE_CHECKING:
    from .kasan import Kasan

KMALLOC_SIZES = (8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192)
_SLAB_BASE = 0xFFFF888100000000


@dataclass(frozen=True)
class Track:
    """Who allocated or freed an object, and from where (``struct kasan_track``)."""

    task: Task
    stack: tuple[str, ...]


class Object:
    """One allocation. ``what`` names it for people (``struct foo_priv``)."""

    def __init__(self, slab: Slab, addr: int, size: int, cache: str, what: str, alloc: Track):
        self.slab = slab
        self.addr = addr
        self.size = size
        self.cache = cache
        self.what = what
        self.alloc_track = alloc
        self.free_track: Track | None = None

    @property
    def freed(self) -> bool:
        return self.free_track is not None

    @property
    def cache_size(self) -> int:
        return int(self.cache.removeprefix("kmalloc-").removesuffix("k")) * (
            1024 if self.cache.endswith("k") else 1
        )

    def access(self, offset: int, size: int, *, write: bool) -> bool:
        """Touch ``size`` bytes at ``offset`` from the current stack (taken only when there is
        something to report); returns False, after a KASAN report, if the object was freed."""
        if not self.freed:
            return True
        self.slab.kasan.report_use_after_free(
            self, offset, size, write=write, stack=stacktrace.stack()
        )
        return False


class Slab:
    def __init__(self, kasan: Kasan) -> None:
        self.kasan = kasan
        self._next_addr = itertools.count()

    def kmalloc(self, size: int, what: str, stack: tuple[str, ...]) -> Object:
        cache_size = next((s for s in KMALLOC_SIZES if s >= size), size)
        cache = f"kmalloc-{cache_size // 1024}k" if cache_size >= 1024 else f"kmalloc-{cache_size}"
        addr = _SLAB_BASE + next(self._next_addr) * 0x2000
        return Object(self, addr, size, cache, what, Track(current(), stack))

    def kfree(self, obj: Object, stack: tuple[str, ...]) -> None:
        if obj.freed:
            self.kasan.report_double_free(obj, stack)
            return
        obj.free_track = Track(current(), stack)
