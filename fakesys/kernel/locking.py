"""Mutexes and spinlocks (kernel/locking/mutex.c, spinlock.c), known to lockdep.

A lock's lockdep class is where it was initialised, as in the kernel: a lock embedded in a
struct has the class ``&<var>-><field>`` of that struct type (``&priv->lock``), a static one
(``DEFINE_MUTEX(foo_lock)``) the class of its name. Taking a lock while holding another records
the order, and an order that closes a cycle is reported (:mod:`.lockdep`).

A mutex sleeps: ``await mutex_lock(&m)``. A spinlock does not, and the code that holds it must
not either; in this single-threaded simulation nothing else can run while it is held, so it is
only bookkeeping for lockdep and for the report of a lock used after its memory was freed.

Limitations: no recursion check (taking a mutex twice deadlocks the task, as it would hang the
kernel's); interrupts are never really disabled, so ``spin_lock_irqsave`` is ``spin_lock``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .calls import current_kernel, resume_module_code
from .lockdep import LD_WAIT_CONFIG, LD_WAIT_INV, LD_WAIT_SLEEP, LockClass
from .slab import Embedded
from .stacktrace import current_frames, frame

if TYPE_CHECKING:
    from .kernel import Kernel

_classes: dict[tuple[type, str], LockClass] = {}


def _caller() -> str:
    """The function that takes the lock: lockdep's ``at:``."""
    frames = current_frames()
    return frames[-1][0] if frames else "kernel_init"


class _Lock(Embedded):
    WAIT = (LD_WAIT_SLEEP, LD_WAIT_INV)  # (inner, outer): a mutex sets no outer
    ACQUIRE_FN = "mutex_lock_nested"

    def __init__(self, name: str | None = None) -> None:
        self._name = name
        self._class: LockClass | None = None

    @property
    def lock_class(self) -> LockClass:
        if self._class is None:
            if self._name is not None or self._container is None:
                self._class = LockClass(self._name or self.lock_class_name(), "{+.+.}", self.WAIT,
                                        self.ACQUIRE_FN)  # fmt: skip
            else:
                key = (type(self._container), self._field)
                if key not in _classes:
                    _classes[key] = LockClass(
                        self.lock_class_name(), "{+.+.}", self.WAIT, self.ACQUIRE_FN
                    )
                self._class = _classes[key]
        return self._class

    def _acquire(self, kernel: Kernel, fn: str) -> None:
        with frame(fn):
            self.touch(0, 8, write=True)
        kernel.lockdep.acquire(self.lock_class, self.address, _caller())

    def _release(self, kernel: Kernel, fn: str) -> None:
        with frame(fn):
            self.touch(0, 8, write=True)
        kernel.lockdep.release(self.lock_class)


class Mutex(_Lock):
    """``struct mutex``."""

    C_SIZE = 32

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self._lock = trio.Lock()


class SpinLock(_Lock):
    """``spinlock_t``."""

    C_SIZE = 4
    C_ALIGN = 4
    WAIT = (LD_WAIT_CONFIG, LD_WAIT_INV)  # spinlock_t: LD_WAIT_CONFIG
    ACQUIRE_FN = "_raw_spin_lock"

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.locked = False


def mutex_init(lock: Mutex) -> None:
    """mutex_init(): a zeroed mutex is ready; this is for code that reads like the kernel's."""


async def mutex_lock(lock: Mutex) -> None:
    """mutex_lock(): sleep until the mutex is ours."""
    kernel = current_kernel()
    lock._acquire(kernel, "__mutex_lock")
    await lock._lock.acquire()
    resume_module_code()


async def mutex_lock_interruptible(lock: Mutex) -> None:
    """mutex_lock_interruptible(): as mutex_lock(); a signal ends the wait with EINTR (the
    request is interrupted, see :mod:`fakesys.fuse`)."""
    await mutex_lock(lock)


def mutex_trylock(lock: Mutex) -> bool:
    """mutex_trylock(): take the mutex if it is free; True if taken."""
    try:
        lock._lock.acquire_nowait()
    except trio.WouldBlock:
        return False
    lock._acquire(current_kernel(), "mutex_trylock")
    return True


def mutex_unlock(lock: Mutex) -> None:
    lock._release(current_kernel(), "mutex_unlock")
    lock._lock.release()


def mutex_is_locked(lock: Mutex) -> bool:
    return lock._lock.locked()


def spin_lock_init(lock: SpinLock) -> None:
    """spin_lock_init(): a zeroed spinlock is ready."""


def spin_lock(lock: SpinLock) -> None:
    lock._acquire(current_kernel(), "_raw_spin_lock")
    lock.locked = True


def spin_unlock(lock: SpinLock) -> None:
    lock.locked = False
    lock._release(current_kernel(), "_raw_spin_unlock")


def spin_lock_irqsave(lock: SpinLock) -> int:
    """spin_lock_irqsave(): returns the flags to give back to spin_unlock_irqrestore()."""
    spin_lock(lock)
    return 0


def spin_unlock_irqrestore(lock: SpinLock, flags: int) -> None:
    spin_unlock(lock)


def DEFINE_MUTEX(name: str) -> Mutex:
    """A static mutex with the lock class ``name``."""
    return Mutex(name)


def DEFINE_SPINLOCK(name: str) -> SpinLock:
    return SpinLock(name)
