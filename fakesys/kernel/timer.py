"""Timers (kernel/time/timer.c) on the engine's clock.

A timer's function runs in softirq context once its expiry (in jiffies) has passed: it must
not sleep. The timer wheel reads the timer before it calls the function, so a timer that
fires after the memory it lives in was freed is reported in ``__run_timers``, as a KASAN
kernel reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from .calls import call_atomic, current_kernel
from .sched import run_as_kernel_thread
from .slab import Embedded
from .stacktrace import enter, frame, frames
from .workqueue import HZ

if TYPE_CHECKING:
    from .kernel import Kernel

TIMER_SOFTIRQ_FRAMES = frames(
    "asm_sysvec_apic_timer_interrupt", "sysvec_apic_timer_interrupt", "__irq_exit_rcu",
    "handle_softirqs", "run_timer_softirq",
)  # fmt: skip


class TimerList(Embedded):
    """``struct timer_list``."""

    C_SIZE = 40

    def __init__(self) -> None:
        self.function: Callable[[TimerList], None] | None = None
        self.expires = 0
        self.kernel: Kernel | None = None
        self.pending = False
        self.running = False
        self.deadline = 0.0
        self._scope: trio.CancelScope | None = None
        self._idle = trio.Event()
        self._idle.set()

    def _cancel(self) -> bool:
        was = self.pending
        self.pending = False
        if self._scope is not None:
            self._scope.cancel()
            self._scope = None
        if not self.running:
            self._idle.set()
        return was

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def _fire(self, scope: trio.CancelScope) -> None:
        kernel = self.kernel
        assert kernel is not None
        with scope:
            await kernel.clock.sleep_until(self.deadline)
        if scope.cancel_called or not self.pending:
            return
        self._scope = None
        self.pending = False
        self.running = True
        run_as_kernel_thread("swapper/0")
        try:
            with enter(TIMER_SOFTIRQ_FRAMES), frame("__run_timers"):
                if not self.touch(0, 16, write=True):
                    return
                function = self.function
                if function is not None:
                    with frame("call_timer_fn"):
                        call_atomic(kernel, function, self)
        finally:
            self.running = False
            self._idle.set()


def timer_setup(timer: TimerList, function: Callable[[TimerList], None], flags: int = 0) -> None:
    """timer_setup(): ``function(timer)`` runs at expiry; container_of() finds its struct."""
    with frame("init_timer_key"):
        timer.touch(0, 40, write=True)
    timer.function = function
    timer.kernel = current_kernel()
    timer.kernel.timers.add(timer)


def mod_timer(timer: TimerList, expires: int) -> bool:
    """(Re)arm to fire at jiffy ``expires``; True if it was pending."""
    with frame("__mod_timer"):
        timer.touch(0, 16, write=True)
    kernel = timer.kernel
    if kernel is None:
        raise RuntimeError("mod_timer() before timer_setup()")
    was = timer._cancel()
    timer.expires = expires
    delay = (expires - kernel.clock.jiffies()) / HZ
    timer.deadline = kernel.clock.now() + max(delay, 0)
    timer.pending = True
    if timer._idle.is_set():
        timer._idle = trio.Event()
    scope = timer._scope = trio.CancelScope()
    kernel.spawn(lambda: timer._fire(scope))
    return was


def add_timer(timer: TimerList) -> None:
    mod_timer(timer, timer.expires)


def timer_pending(timer: TimerList) -> bool:
    timer.touch(0, 8, write=False)
    return timer.pending


def timer_delete(timer: TimerList) -> bool:
    """del_timer(): deactivate; a callback already running goes on. True if it was pending."""
    with frame("timer_delete"):
        timer.touch(0, 16, write=True)
    return timer._cancel()


async def timer_delete_sync(timer: TimerList) -> bool:
    """del_timer_sync(): deactivate and wait for a running callback to return."""
    with frame("timer_delete_sync"):
        timer.touch(0, 16, write=True)
        was = timer._cancel()
        await timer.wait_idle()
        return was


del_timer = timer_delete
del_timer_sync = timer_delete_sync
