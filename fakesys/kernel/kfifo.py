"""Byte FIFOs (include/linux/kfifo.h, lib/kfifo.c).

``kfifo_is_empty()`` and ``kfifo_len()`` are macros that read the FIFO's indexes in the
caller's own code, so a use after free is reported in the caller; ``kfifo_in()`` and
``kfifo_out()`` go through ``__kfifo_in``/``__kfifo_out``. A FIFO holds at most its size (set
by kfifo_alloc(); what does not fit is not copied, and kfifo_in() says how much was).

Limitations: the data is kept with the FIFO, not in a buffer of its own, so kfifo_free() of a
FIFO that is still used is not seen.
"""

from __future__ import annotations

from .slab import Embedded
from .stacktrace import frame


class Kfifo(Embedded):
    """``struct kfifo``: in, out, mask, esize, data."""

    C_SIZE = 24

    def __init__(self) -> None:
        self.size = 0
        self.data = bytearray()


def kfifo_alloc(fifo: Kfifo, size: int) -> None:
    """kfifo_alloc(): room for ``size`` bytes (the kernel rounds it to a power of two)."""
    with frame("__kfifo_alloc"):
        fifo.touch(0, 24, write=True)
    fifo.size = 1 << max(size - 1, 1).bit_length()
    fifo.data = bytearray()


def kfifo_free(fifo: Kfifo) -> None:
    with frame("__kfifo_free"):
        fifo.touch(0, 24, write=True)
    fifo.size = 0


def kfifo_len(fifo: Kfifo) -> int:
    fifo.touch(0, 8, write=False)
    return len(fifo.data)


def kfifo_is_empty(fifo: Kfifo) -> bool:
    fifo.touch(0, 8, write=False)
    return not fifo.data


def kfifo_avail(fifo: Kfifo) -> int:
    fifo.touch(0, 12, write=False)
    return fifo.size - len(fifo.data)


def kfifo_in(fifo: Kfifo, data: bytes) -> int:
    """Copy in as much of ``data`` as fits; returns how much that was."""
    with frame("__kfifo_in"):
        fifo.touch(0, 8, write=True)
        room = max(fifo.size - len(fifo.data), 0)
        fifo.data += data[:room]
        return min(room, len(data))


def kfifo_out(fifo: Kfifo, count: int) -> bytes:
    """Take up to ``count`` bytes out."""
    with frame("__kfifo_out"):
        fifo.touch(0, 8, write=True)
        out = bytes(fifo.data[:count])
        del fifo.data[:count]
        return out


def kfifo_reset(fifo: Kfifo) -> None:
    fifo.touch(0, 8, write=True)
    fifo.data.clear()
