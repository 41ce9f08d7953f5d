"""Reference counts whose last put is an event (include/linux/kref.h, lib/refcount.c).

``kref_put(&priv->ref, release)`` calls ``release(kref)`` when the count drops to zero; the
release usually finds its struct with container_of() and frees it. Misuse is what
refcount_t reports: a get on a count that already reached zero is "addition on 0;
use-after-free", a put below zero "underflow; use-after-free", each a WARN with taint W, and
the count is left saturated, so nothing is released twice.

The driver core's own counts (a struct device's) use :meth:`Kref.get` and :meth:`Kref.put`
with the release given at creation; there a misuse is a bug of the engine and raises.
"""

from __future__ import annotations

from collections.abc import Callable

from .calls import call_atomic, current_kernel
from .panic import warn
from .slab import Embedded
from .stacktrace import frame

REFCOUNT_SATURATED = -(1 << 30)


class Kref(Embedded):
    """``struct kref``: a ``refcount_t``."""

    C_SIZE = 4
    C_ALIGN = 4

    def __init__(self, release: Callable[[], None] | None = None) -> None:
        self.count = 0 if release is None else 1
        self._release = release

    def get(self) -> None:
        if self.count <= 0:
            raise RuntimeError("kref_get() on a released object")
        self.count += 1

    def put(self) -> bool:
        """Drop one reference; returns True if that was the last one and ``release`` ran."""
        if self.count <= 0:
            raise RuntimeError("kref_put() on a released object")
        self.count -= 1
        if self.count == 0:
            assert self._release is not None
            self._release()
            return True
        return False


def _saturate(message: str) -> None:
    with frame("refcount_warn_saturate"):
        warn(current_kernel(), f"refcount_t: {message}.", "lib/refcount.c:28",
             "refcount_warn_saturate")  # fmt: skip


def kref_init(kref: Kref) -> None:
    with frame("kref_init"):
        kref.touch(0, 4, write=True)
    kref.count = 1


def kref_read(kref: Kref) -> int:
    kref.touch(0, 4, write=False)
    return max(kref.count, 0)


def kref_get(kref: Kref) -> None:
    with frame("kref_get"):
        kref.touch(0, 4, write=True)
    if kref.count == REFCOUNT_SATURATED:
        return
    if kref.count == 0:
        kref.count = REFCOUNT_SATURATED
        _saturate("addition on 0; use-after-free")
        return
    kref.count += 1


def kref_get_unless_zero(kref: Kref) -> bool:
    with frame("kref_get_unless_zero"):
        kref.touch(0, 4, write=True)
    if kref.count <= 0:
        return False
    kref.count += 1
    return True


def kref_put(kref: Kref, release: Callable[[Kref], None]) -> bool:
    """Drop a reference; at zero call ``release(kref)``. True if it was released."""
    with frame("kref_put"):
        kref.touch(0, 4, write=True)
    if kref.count == REFCOUNT_SATURATED:
        return False
    if kref.count <= 0:
        kref.count = REFCOUNT_SATURATED
        _saturate("underflow; use-after-free")
        return False
    kref.count -= 1
    if kref.count:
        return False
    call_atomic(current_kernel(), release, kref)
    return True
