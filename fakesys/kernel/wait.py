"""Wait queues and completions (kernel/sched/wait.c, completion.c), and poll_wait().

``await wait_event_interruptible(&wq, condition)`` sleeps until ``condition()`` holds, checked
again after every wake_up(); a signal to the caller interrupts it: the request answers EINTR
and the driver's ``finally`` blocks run, as a driver's error path would after -ERESTARTSYS.
A file whose poll() called poll_wait() on a queue is notified when the queue is woken, which
is how select() and poll() on a device node learn that data arrived.

A read that sleeps in a wait queue counts as a blocked reader of its device's hardware
(``sys/kernel/debug/fakesys/devices/<dev>/readers``), so that a script can wait until a reader
is really in the driver before it races something against it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .slab import Embedded
from .stacktrace import frame

if TYPE_CHECKING:
    from ..kernfs import KernfsNode
    from .char_dev import File
    from .hw import Hardware
    from .slab import Struct

#: The hardware whose node the current read is on (set by the character-device layer).
reading_from: contextvars.ContextVar[Hardware | None] = contextvars.ContextVar(
    "reading_from", default=None
)


class WaitQueueHead(Embedded):
    """``wait_queue_head_t``."""

    C_SIZE = 24

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()
        self._pollers: set[KernfsNode] = set()

    def _lock(self, fn: str) -> None:
        """The queue's spinlock, taken by every operation on it."""
        with frame(fn):
            self.touch(0, 8, write=True)


def init_waitqueue_head(wq: WaitQueueHead) -> None:
    """init_waitqueue_head(): a zeroed queue is ready."""


async def wait_event_interruptible(wq: WaitQueueHead, condition: Callable[[], object]) -> None:
    """Sleep until ``condition()`` is true (checked first, and after each wake-up)."""
    while not condition():
        wq._lock("prepare_to_wait_event")
        hw = reading_from.get()
        if hw is not None:
            hw.readers += 1
        try:
            await wq._lot.park()
        finally:
            if hw is not None:
                hw.readers -= 1


def wake_up(wq: WaitQueueHead) -> None:
    """wake_up(), wake_up_interruptible(), wake_up_all(): every sleeper checks its condition
    again, and pollers are told."""
    wq._lock("__wake_up")
    wq._lot.unpark_all()
    for node in list(wq._pollers):
        if node.active:
            node.notify()
        else:  # the node was removed: no poller can be left on it
            wq._pollers.discard(node)


wake_up_interruptible = wake_up
wake_up_all = wake_up


def waitqueue_active(wq: WaitQueueHead) -> bool:
    return bool(wq._lot.statistics().tasks_waiting)


def poll_wait(file: File, wq: WaitQueueHead) -> None:
    """poll_wait(): the file's pollers are notified when ``wq`` is woken."""
    wq._pollers.add(file.of.node)


class Completion(Embedded):
    """``struct completion``: a one-way event, counted."""

    C_SIZE = 32

    def __init__(self) -> None:
        self.done = 0
        self.wait = WaitQueueHead()

    def _embed(self, container: Struct, offset: int, field: str) -> None:
        super()._embed(container, offset, field)
        self.wait._embed(container, offset + 8, field)  # after the count


def init_completion(c: Completion) -> None:
    c.done = 0


reinit_completion = init_completion


def complete(c: Completion) -> None:
    c.done += 1
    wake_up(c.wait)


def complete_all(c: Completion) -> None:
    c.done = 1 << 30
    wake_up(c.wait)


async def wait_for_completion(c: Completion) -> None:
    with frame("wait_for_completion"):
        c.touch(0, 4, write=False)
        await wait_event_interruptible(c.wait, lambda: c.done > 0)
    if c.done < 1 << 30:
        c.done -= 1
