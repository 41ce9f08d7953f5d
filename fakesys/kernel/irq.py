"""Interrupts and tasklets (kernel/irq/manage.c, kernel/irq/devres.c, kernel/softirq.c).

A device's interrupt line is raised by its hardware (data arriving, or a write to its ``irq``
control file). Every handler requested on the line runs at once, in hard-irq context on the
stack of whoever raised it, with the ``dev_id`` it was requested with; a line nobody handles
is counted as spurious. A tasklet a handler schedules runs afterwards, as deferred work in
ksoftirqd, behind the ``tasklet`` hold point; the softirq code reads the tasklet before it
calls its function, so a tasklet that runs after its struct was freed is reported in
``tasklet_action_common``.

devm_request_irq() registers the IRQ as a managed resource, released with the devres *after*
the driver's remove(): the window the devres article warns about, where an interrupt still
reaches a handler whose tasklet was already killed.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError
from .calls import call_atomic, current_kernel
from .devres import Devres, devres_add, devres_destroy
from .sched import run_as_kernel_thread
from .slab import Embedded
from .stacktrace import enter, frame, frames

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel

IRQ_FRAMES = frames("asm_common_interrupt", "common_interrupt", "__handle_irq_event_percpu")
SOFTIRQ_FRAMES = frames("ret_from_fork", "kthread", "smpboot_thread_fn", "run_ksoftirqd",
                        "handle_softirqs")  # fmt: skip

IRQ_NONE = 0
IRQ_HANDLED = 1
IRQF_SHARED = 0x80

IrqHandler = Callable[["IrqLine", object], int]


@dataclass
class IrqAction:
    handler: IrqHandler
    flags: int
    name: str
    dev_id: object


class IrqLine:
    """One interrupt line (``struct irq_desc``): drivers pass it where the kernel passes the
    IRQ number."""

    def __init__(self, number: int = 0) -> None:
        self.number = number
        self.actions: list[IrqAction] = []
        self.count = 0
        self.spurious = 0

    def __repr__(self) -> str:
        return f"<irq {self.number}>"

    def raise_irq(self) -> None:
        """handle_irq_event(): run every handler; unhandled counts as spurious."""
        self.count += 1
        handled = False
        if self.actions:
            kernel = current_kernel()
            with enter(IRQ_FRAMES):
                for action in list(self.actions):
                    ret = call_atomic(kernel, action.handler, self, action.dev_id)
                    handled = handled or ret == IRQ_HANDLED
        if not handled:
            self.spurious += 1


def request_irq(irq: IrqLine, handler: IrqHandler, flags: int, name: str, dev_id: object) -> None:
    """request_irq(): EBUSY if the line is taken and not shared by both (__setup_irq())."""
    if any(not (flags & a.flags & IRQF_SHARED) for a in irq.actions):
        raise ErrnoError(errno.EBUSY)
    irq.actions.append(IrqAction(handler, flags, name, dev_id))


def free_irq(irq: IrqLine, dev_id: object) -> None:
    """free_irq(): the action with ``dev_id`` goes; a handler running on another CPU would be
    waited for (there is none: handlers never sleep)."""
    for action in irq.actions:
        if action.dev_id is dev_id:
            irq.actions.remove(action)
            return
    from .panic import warn  # noqa: PLC0415 (panic is low in the stack; this is rare)

    with frame("free_irq"):
        warn(current_kernel(), f"Trying to free already-free IRQ {irq.number}",
             "kernel/irq/manage.c:1923", "__free_irq")  # fmt: skip


def devm_request_irq(
    dev: Device, irq: IrqLine, handler: IrqHandler, flags: int, name: str, dev_id: object
) -> None:
    """request_irq() as a managed resource: freed by devres, after the driver's remove()."""
    request_irq(irq, handler, flags, name, dev_id)
    devres_add(dev, Devres("devm_irq_release", lambda: free_irq(irq, dev_id), match=(irq, dev_id)))


def devm_free_irq(dev: Device, irq: IrqLine, dev_id: object) -> None:
    """Free a managed IRQ now, and drop it from the devres list."""
    devres_destroy(dev, "devm_irq_release", (irq, dev_id))
    free_irq(irq, dev_id)


class Tasklet(Embedded):
    """``struct tasklet_struct``."""

    C_SIZE = 40

    def __init__(self) -> None:
        self.callback: Callable[[Tasklet], None] | None = None
        self.kernel: Kernel | None = None
        self.scheduled = False
        self._idle = trio.Event()
        self._idle.set()

    async def _run(self) -> None:
        kernel = self.kernel
        assert kernel is not None
        run_as_kernel_thread("ksoftirqd/0")
        try:
            await kernel.hold.reach("tasklet")
            with enter(SOFTIRQ_FRAMES), frame("tasklet_action_common"):
                self.touch(0, 16, write=True)  # t->next, t->state
                self.scheduled = False
                if self.callback is not None:
                    call_atomic(kernel, self.callback, self)
        finally:
            self.scheduled = False
            self._idle.set()


def tasklet_setup(t: Tasklet, callback: Callable[[Tasklet], None]) -> None:
    """tasklet_setup(): ``callback(t)`` runs once per schedule; from_tasklet() (container_of)
    finds its struct."""
    t.touch(0, 40, write=True)
    t.callback = callback
    t.kernel = current_kernel()


def tasklet_schedule(t: Tasklet) -> None:
    """A no-op if already scheduled."""
    with frame("__tasklet_schedule_common"):
        t.touch(0, 16, write=True)
    if t.scheduled:
        return
    if t.kernel is None:
        raise RuntimeError("tasklet_schedule() before tasklet_setup()")
    t.scheduled = True
    t._idle = trio.Event()
    t.kernel.spawn(t._run)


async def tasklet_kill(t: Tasklet) -> None:
    """tasklet_kill(): wait until a scheduled run is over. It does not stop a later
    tasklet_schedule() from scheduling it again."""
    with frame("tasklet_kill"):
        t.touch(0, 16, write=True)
        await t._idle.wait()
