"""Reference counts whose last put is an event (include/linux/kref.h)."""

from __future__ import annotations

from collections.abc import Callable


class Kref:
    """A reference count that calls ``release`` when it drops to zero.

    A get after the release is a use-after-free in the kernel; here it raises, because it is a
    bug in the engine, not a behaviour being simulated (those go through :mod:`.slab`).
    """

    def __init__(self, release: Callable[[], None]) -> None:
        self.count = 1
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
            self._release()
            return True
        return False
