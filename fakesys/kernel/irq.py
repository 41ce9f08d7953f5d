"""Interrupts and tasklets (kernel/irq/manage.c, kernel/irq/devres.c, kernel/softirq.c).

A device's interrupt is raised from its control file. The handler runs at once, in the
context of whoever raised it (hard-irq context borrows the interrupted task); a tasklet it
schedules runs afterwards as deferred work, behind the ``tasklet`` hold point. An interrupt
with no handler is counted and otherwise ignored, as a spurious one.

devm_request_irq() registers the IRQ as a managed resource, released with the devres *after*
the driver's remove(): the window the devres article warns about, where an interrupt still reaches a
handler whose tasklet was already killed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from .devres import Devres, devres_add
from .sched import run_as_kernel_thread
from .stacktrace import Frames, enter, frames

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel

IRQ_FRAMES = frames("asm_common_interrupt", "common_interrupt", "__handle_irq_event_percpu")
SOFTIRQ_FRAMES = frames("ret_from_fork", "kthread", "smpboot_thread_fn", "run_ksoftirqd",
                        "handle_softirqs", "tasklet_action_common")  # fmt: skip


@dataclass
class IrqAction:
    handler: Callable[[], None]
    name: str
    module: str | None


class IrqLine:
    """One interrupt line of a simulated device."""

    def __init__(self) -> None:
        self.action: IrqAction | None = None
        self.count = 0
        self.spurious = 0

    def raise_irq(self) -> None:
        self.count += 1
        if self.action is None:
            self.spurious += 1
            return
        with enter(IRQ_FRAMES + frames(self.action.name, module=self.action.module)):
            self.action.handler()


def request_irq(line: IrqLine, handler: Callable[[], None], name: str, module: str | None) -> None:
    line.action = IrqAction(handler, name, module)


def free_irq(line: IrqLine) -> None:
    line.action = None


def devm_request_irq(
    dev: Device, line: IrqLine, handler: Callable[[], None], name: str, module: str | None
) -> None:
    request_irq(line, handler, name, module)
    devres_add(dev, Devres("devm_irq_release", lambda: free_irq(line)))


def devm_free_irq(dev: Device, line: IrqLine) -> None:
    """Free the IRQ now and drop it from the devres list."""
    free_irq(line)
    dev.devres = [res for res in dev.devres if res.name != "devm_irq_release"]


class Tasklet:
    """``struct tasklet_struct``: run ``func`` once per schedule, as deferred work."""

    def __init__(self, kernel: Kernel, func: Callable[[], None], name: str, module: str | None):
        self.kernel = kernel
        self.func = func
        self.frames: Frames = frames(name, module=module)
        self.scheduled = False
        self._idle = trio.Event()
        self._idle.set()

    def schedule(self) -> None:
        """tasklet_schedule(): a no-op if already scheduled."""
        if self.scheduled:
            return
        self.scheduled = True
        self._idle = trio.Event()
        self.kernel.spawn(self._run)

    async def _run(self) -> None:
        run_as_kernel_thread("ksoftirqd/0")
        try:
            await self.kernel.hold.reach("tasklet")
            with enter(SOFTIRQ_FRAMES + self.frames):
                self.func()
        finally:
            self.scheduled = False
            self._idle.set()

    async def kill(self) -> None:
        """tasklet_kill(): wait until a scheduled run is over. It does not stop a later
        tasklet_schedule() from scheduling it again."""
        await self._idle.wait()
