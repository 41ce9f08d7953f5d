"""The engine's clock, and delayed work on it (kernel/time, kernel/workqueue.c).

Engine time is trio's clock plus an offset that the control plane can move forward
(``echo 300 > sys/kernel/debug/fakesys/advance_clock``), so a five-minute devcoredump timeout is
a write away instead of five minutes away. Delayed work runs as a ``kworker`` task when its
deadline passes on that clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from .lockdep import RCU_READ_LOCK, LockClass, held, static_addr
from .sched import run_as_kernel_thread
from .stacktrace import enter, frame, frames

if TYPE_CHECKING:
    from .kernel import Kernel


RCU_ADDR = static_addr("rcu_lock_map")
WORKER_FRAMES = frames("ret_from_fork", "kthread", "worker_thread", "process_one_work")


class Clock:
    def __init__(self) -> None:
        self._boot = trio.current_time()
        self.offset = 0.0
        self._moved = trio.Event()

    def now(self) -> float:
        """Seconds since boot."""
        return trio.current_time() - self._boot + self.offset

    def now_ns(self) -> int:
        return int(self.now() * 1e9)

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self._moved.set()
        self._moved = trio.Event()

    async def sleep_until(self, deadline: float) -> None:
        while (left := deadline - self.now()) > 0:
            with trio.move_on_after(left):
                await self._moved.wait()


class DelayedWork:
    """``struct delayed_work``: ``fn`` runs once per schedule, after its delay.

    ``lock_class`` is the work's lockdep map: the worker holds it while ``fn`` runs, and a
    flush acquires it, which is how lockdep sees "waits for the work" in a dependency chain.
    """

    def __init__(
        self,
        kernel: Kernel,
        fn: Callable[[], Awaitable[None]],
        lock_class: LockClass,
        addr: int,
    ) -> None:
        self.kernel = kernel
        self.fn = fn
        self.lock_class = lock_class
        #: The work's address: its lockdep map's, in reports.
        self.addr = addr
        self.pending = False
        self.running = False
        self.disabled = False
        self.deadline = 0.0
        self._generation = 0
        self._idle = trio.Event()
        self._idle.set()
        kernel.delayed_works.add(self)

    def schedule(self, delay: float) -> bool:
        """schedule_delayed_work(): False if it was already pending."""
        if self.pending or self.disabled:
            return False
        self._arm(delay)
        return True

    def mod(self, delay: float) -> None:
        """mod_delayed_work(): (re)arm with a new delay."""
        if not self.disabled:
            self._arm(delay)

    def cancel(self) -> bool:
        """cancel_delayed_work(): True if it was pending (and now is not)."""
        if not self.pending:
            return False
        self.pending = False
        self._generation += 1
        if not self.running:
            self._idle.set()
        return True

    async def flush(self) -> None:
        """flush_delayed_work(): run a pending work now and wait until it is done."""
        # __flush_work(): rcu_read_lock(), then lock_map_acquire(&work->lockdep_map).
        lockdep = self.kernel.lockdep
        with (
            frame("flush_delayed_work", "__flush_work"),
            held(RCU_READ_LOCK, RCU_ADDR, "__flush_work"),
        ):
            lockdep.acquire(self.lock_class, self.addr, "__flush_work")
            lockdep.release(self.lock_class)
        if self.pending:
            self._arm(0)
        await self._idle.wait()

    async def wait_idle(self) -> None:
        """Until neither pending nor running (no lockdep: not a flush a driver makes)."""
        await self._idle.wait()

    async def disable_sync(self) -> None:
        """disable_delayed_work_sync(): cancel, wait for a running one, never run again."""
        self.disabled = True
        self.cancel()
        await self._idle.wait()

    def _arm(self, delay: float) -> None:
        self.pending = True
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self.deadline = self.kernel.clock.now() + delay
        self._generation += 1
        self.kernel.spawn(lambda: self._timer(self._generation))

    async def _timer(self, generation: int) -> None:
        await self.kernel.clock.sleep_until(self.deadline)
        if generation != self._generation or not self.pending:
            return
        self.pending = False
        self.running = True
        run_as_kernel_thread("kworker/u8:2")
        try:
            with (
                enter(WORKER_FRAMES),
                self.kernel.lockdep.holding(self.lock_class, self.addr, "process_one_work"),
            ):
                await self.fn()
        finally:
            self.running = False
            if not self.pending:
                self._idle.set()
