"""The engine's clock, jiffies, and work on it (kernel/time, kernel/workqueue.c).

Engine time is trio's clock plus an offset that the control plane can move forward
(``echo 300 > sys/kernel/debug/fakesys/advance_clock``), so a five-minute devcoredump timeout is
a write away instead of five minutes away. Jiffies count it at HZ=250, as Debian's kernels do,
from INITIAL_JIFFIES.

Work runs as a ``kworker`` task, delayed work once its deadline passes on that clock. A work
item's lockdep map is held while it runs and acquired by a flush, which is how lockdep sees
"waits for the work" in a dependency chain; its class is named after where it was initialised
(``(work_completion)(&priv->work)``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from .calls import call, current_kernel
from .lockdep import RCU_READ_LOCK, LockClass, held, static_addr, work_class
from .sched import run_as_kernel_thread
from .slab import Embedded
from .stacktrace import enter, frame, frames

if TYPE_CHECKING:
    from .kernel import Kernel


RCU_ADDR = static_addr("rcu_lock_map")
WORKER_FRAMES = frames("ret_from_fork", "kthread", "worker_thread", "process_one_work")

NSEC_PER_SEC = 1_000_000_000
HZ = 250
INITIAL_JIFFIES = (-300 * HZ) % 2**32  # wraps five minutes after boot (include/linux/jiffies.h)


class Clock:
    """Engine time. The offset is kept in integer nanoseconds, so that a jump of any size
    (``advance_clock`` takes up to 2**64 - 1 seconds) keeps later deadlines distinct from
    now: in floating point, 1.8e19 + 0.1 == 1.8e19, and a periodic source would never get
    ahead of the clock again."""

    def __init__(self) -> None:
        self._boot = trio.current_time()
        self.offset_ns = 0
        self._moved = trio.Event()

    def now_ns(self) -> int:
        """Nanoseconds since boot, exact however far the clock was advanced."""
        return round((trio.current_time() - self._boot) * NSEC_PER_SEC) + self.offset_ns

    def now(self) -> float:
        """Seconds since boot."""
        return self.now_ns() / NSEC_PER_SEC

    def jiffies(self) -> int:
        return (INITIAL_JIFFIES + self.now_ns() * HZ // NSEC_PER_SEC) % 2**64

    def advance(self, seconds: int) -> None:
        self.offset_ns += seconds * NSEC_PER_SEC
        self._moved.set()
        self._moved = trio.Event()

    async def sleep_until(self, deadline: float) -> None:
        await self.sleep_until_ns(round(deadline * NSEC_PER_SEC))

    async def sleep_until_ns(self, deadline_ns: int) -> None:
        """Until the clock reaches ``deadline_ns``, by trio's clock or by a jump. Always a
        checkpoint, so a caller looping on it can never starve the other tasks."""
        await trio.lowlevel.checkpoint()
        while (left := deadline_ns - self.now_ns()) > 0:
            with trio.move_on_after(left / NSEC_PER_SEC):
                await self._moved.wait()


def jiffies() -> int:
    return current_kernel().clock.jiffies()


def msecs_to_jiffies(ms: int) -> int:
    return -(-ms * HZ // 1000)


def jiffies_to_seconds(delay: int) -> float:
    return delay / HZ


class WorkStruct(Embedded):
    """``struct work_struct``: ``fn`` runs once per queueing, in a kworker.

    Engine code gives ``kernel``, ``fn`` (called with no argument), its lockdep class and its
    address; a driver's is zeroed in its struct and set up with INIT_WORK().
    """

    C_SIZE = 32

    def __init__(
        self,
        kernel: Kernel | None = None,
        fn: Callable[[], Awaitable[None]] | None = None,
        lock_class: LockClass | None = None,
        addr: int | None = None,
    ) -> None:
        self.kernel = kernel
        self.fn = fn
        self.lock_class = lock_class or work_class("(work_completion)(work)")
        self._addr = addr
        self.pending = False
        self.running = False
        self.disabled = False
        self._idle = trio.Event()
        self._idle.set()

    @property
    def addr(self) -> int:
        """The work's address: its lockdep map's, in reports."""
        return self._addr if self._addr is not None else self.address

    def _init(self, fn: Callable[[WorkStruct], Awaitable[None] | None], what: str) -> None:
        kernel = current_kernel()
        self.kernel = kernel
        self.fn = lambda: call(kernel, fn, self)
        self.lock_class = work_class(f"(work_completion)({what})")
        self.pending = self.running = self.disabled = False

    def _kernel(self) -> Kernel:
        if self.kernel is None:
            raise RuntimeError("work used before INIT_WORK()")
        return self.kernel

    def queue(self) -> bool:
        """queue_work(): False if it was already pending."""
        if self.pending or self.disabled:
            return False
        self.pending = True
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self._kernel().spawn(self._run)
        return True

    async def _run(self) -> None:
        if not self.pending:
            return
        self.pending = False
        self.running = True
        run_as_kernel_thread("kworker/u8:2")
        kernel = self._kernel()
        try:
            with (
                enter(WORKER_FRAMES),
                kernel.lockdep.holding(self.lock_class, self.addr, "process_one_work"),
            ):
                assert self.fn is not None
                await self.fn()
        finally:
            self.running = False
            if not self.pending:
                self._idle.set()

    def cancel(self) -> bool:
        """True if it was pending (and now is not)."""
        if not self.pending:
            return False
        self.pending = False
        if not self.running:
            self._idle.set()
        return True

    async def flush(self) -> None:
        """flush_work(): wait until a queued or running work is done."""
        # __flush_work(): rcu_read_lock(), then lock_map_acquire(&work->lockdep_map).
        lockdep = self._kernel().lockdep
        with (
            frame("__flush_work"),
            held(RCU_READ_LOCK, RCU_ADDR, "__flush_work"),
        ):
            lockdep.acquire(self.lock_class, self.addr, "__flush_work")
            lockdep.release(self.lock_class)
        await self._idle.wait()

    async def wait_idle(self) -> None:
        """Until neither pending nor running (no lockdep: not a flush a driver makes)."""
        await self._idle.wait()


class DelayedWork(WorkStruct):
    """``struct delayed_work``: the work is queued when its timer expires."""

    C_SIZE = 88

    def __init__(
        self,
        kernel: Kernel | None = None,
        fn: Callable[[], Awaitable[None]] | None = None,
        lock_class: LockClass | None = None,
        addr: int | None = None,
    ) -> None:
        super().__init__(kernel, fn, lock_class, addr)
        self.deadline = 0.0
        #: The sleeping timer task of the pending work, if any: cancelling the work cancels
        #: it, so that nothing of a cancelled timer is left until its old deadline.
        self._timer_scope: trio.CancelScope | None = None
        if kernel is not None:
            kernel.timers.add(self)

    def _init(self, fn: Callable[[WorkStruct], Awaitable[None] | None], what: str) -> None:
        super()._init(fn, what)
        self._kernel().timers.add(self)

    def schedule(self, delay: float) -> bool:
        """schedule_delayed_work(), ``delay`` in seconds: False if it was already pending."""
        if self.pending or self.disabled:
            return False
        self._arm(delay)
        return True

    def mod(self, delay: float) -> None:
        """mod_delayed_work(): (re)arm with a new delay."""
        if not self.disabled:
            self._arm(delay)

    def cancel(self) -> bool:
        was_pending = super().cancel()
        self._cancel_timer()
        return was_pending

    async def flush(self) -> None:
        """flush_delayed_work(): run a pending work now and wait until it is done."""
        with frame("flush_delayed_work"):
            if self.pending:
                self._arm(0)
            await super().flush()

    async def disable_sync(self) -> None:
        """disable_delayed_work_sync(): cancel, wait for a running one, never run again."""
        self.disabled = True
        self.cancel()
        await self._idle.wait()

    def _cancel_timer(self) -> None:
        if self._timer_scope is not None:
            self._timer_scope.cancel()
            self._timer_scope = None

    def _arm(self, delay: float) -> None:
        kernel = self._kernel()
        self.pending = True
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        self.deadline = kernel.clock.now() + delay
        self._cancel_timer()
        scope = self._timer_scope = trio.CancelScope()
        kernel.spawn(lambda: self._timer(scope))

    async def _timer(self, scope: trio.CancelScope) -> None:
        with scope:
            await self._kernel().clock.sleep_until(self.deadline)
        if scope.cancel_called or not self.pending:
            return
        self._timer_scope = None
        await self._run()


# -- the driver API --


def INIT_WORK(work: WorkStruct, fn: Callable[[WorkStruct], Awaitable[None] | None]) -> None:
    """INIT_WORK(): ``fn(work)`` runs each time the work is queued."""
    work._init(fn, f"{work.lock_class_name()}")


def INIT_DELAYED_WORK(
    dwork: DelayedWork, fn: Callable[[WorkStruct], Awaitable[None] | None]
) -> None:
    dwork._init(fn, f"&({dwork.lock_class_name()})->work")


def schedule_work(work: WorkStruct) -> bool:
    with frame("queue_work_on"):
        work.touch(0, 8, write=True)
    return work.queue()


def schedule_delayed_work(dwork: DelayedWork, delay: int) -> bool:
    """``delay`` in jiffies."""
    with frame("queue_delayed_work_on"):
        dwork.touch(0, 8, write=True)
    return dwork.schedule(jiffies_to_seconds(delay))


def mod_delayed_work(dwork: DelayedWork, delay: int) -> None:
    with frame("mod_delayed_work_on"):
        dwork.touch(0, 8, write=True)
    dwork.mod(jiffies_to_seconds(delay))


def cancel_delayed_work(dwork: DelayedWork) -> bool:
    with frame("cancel_delayed_work"):
        dwork.touch(0, 8, write=True)
    return dwork.cancel()


async def cancel_work_sync(work: WorkStruct) -> bool:
    """Cancel, and wait for a run in progress to finish; True if it was pending."""
    with frame("cancel_work_sync"):
        work.touch(0, 8, write=True)
        was_pending = work.cancel()
        await work.flush()
        return was_pending


cancel_delayed_work_sync = cancel_work_sync


async def flush_work(work: WorkStruct) -> None:
    with frame("flush_work"):
        work.touch(0, 8, write=False)
        await work.flush()


async def flush_delayed_work(dwork: DelayedWork) -> None:
    dwork.touch(0, 8, write=False)
    await dwork.flush()
