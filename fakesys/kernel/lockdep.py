"""Lock dependency checking (kernel/locking/lockdep.c), for the locks fakesys simulates.

Every time a task acquires a lock while holding others, the order "held → acquired" is
recorded between the two lock *classes*, with the stack that made it. A new order that closes
a cycle is a possible deadlock, reported as lockdep does ("possible circular locking
dependency detected", with the chain and the stacks), whether or not the tasks involved ever
actually wait for each other at the same moment. As in the kernel, the first report turns lock
debugging off (``debug_locks``), and so does the first taint of the kernel.

Limitations: only the locks fakesys models are known to it. Some are recorded as held, for the
"locks held" part of a report, without their order being checked (``validate=False``): those
the kernel does not check either (``&dev->mutex`` has lockdep_set_novalidate_class(),
``rcu_read_lock`` is taken with check=0), and ``sb_writers`` and ``&of->mutex``, which nothing
in the simulation can take in another order. Usage bits are fixed per class, not computed from
how the class was used, and the acquire site of a held lock has the same offset as the frame of
the function in stacks (the kernel's differ by a few bytes).
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .printk import KERN_WARNING
from .sched import current
from .stacktrace import Frames, current_frames, frames, symbolize

if TYPE_CHECKING:
    from .kernel import Kernel

RULER = "=" * 54
THIN = "-" * 54

# Wait types (include/linux/lockdep_types.h). print_lock_name() prints a class's as
# {outer:inner}, the outer being the inner where a class sets none.
LD_WAIT_INV = 0  # not checked: lockdep maps, kernfs active references
LD_WAIT_FREE = 1  # rcu_read_lock
LD_WAIT_CONFIG = 2  # spinlock_t (LD_WAIT_SPIN, raw_spinlock_t, is 2 as well)
LD_WAIT_SLEEP = 3  # mutexes, semaphores

# A kernfs node's address in the kernfs_node_cache, derived from its inode number.
_KERNFS_NODE_BASE = 0xFFFF888200000000
_KERNFS_NODE_SIZE = 0x98
_OPEN_FILE_BASE = 0xFFFF88810C700000
_STATIC_BASE = 0xFFFFFFFF83000000


@dataclass(frozen=True, eq=False)
class LockClass:
    """A lock class: all locks initialised at one place share it (``&devcd->mutex``).

    ``usage`` is the usage mask print_lock_name() shows (``+`` used, ``.`` not, for each of
    hardirq and softirq, write and read); ``wait`` the inner and outer wait types (an outer
    of LD_WAIT_INV: none, the inner stands for it);
    ``acquire_fn`` the locking function that calls lock_acquire() (``mutex_lock_nested``), or
    None where lock_acquire() is called directly (lockdep maps, kernfs_drain()).
    """

    name: str
    usage: str = "{+.+.}"
    wait: tuple[int, int] = (LD_WAIT_SLEEP, LD_WAIT_INV)
    acquire_fn: str | None = "mutex_lock_nested"
    validate: bool = True

    def describe(self) -> str:
        """print_lock_name(): ``(name){usage}-{outer:inner}``, with
        ``class->wait_type_outer ?: class->wait_type_inner`` for the outer."""
        inner, outer = self.wait
        return f"({self.name}){self.usage}-{{{outer or inner}:{inner}}}"


def work_class(name: str) -> LockClass:
    """The lockdep map of a work item (``(work_completion)(&w->work)``)."""
    return LockClass(name, wait=(LD_WAIT_INV, LD_WAIT_INV), acquire_fn=None)


def static_addr(name: str) -> int:
    """The address of a lock in the kernel image (``rcu_read_lock``'s map)."""
    return _STATIC_BASE + (zlib.crc32(name.encode()) & 0xFFFFF0)


def kernfs_node_addr(ino: int) -> int:
    return _KERNFS_NODE_BASE + ino * _KERNFS_NODE_SIZE


def open_file_addr(name: str) -> int:
    """A ``struct kernfs_open_file`` for a file called ``name`` (its ``mutex``)."""
    return _OPEN_FILE_BASE + (zlib.crc32(name.encode()) & 0xFFFF0)


# Taken by every write(2) to a sysfs file (file_start_write(), kernfs_fop_write_iter()).
SB_WRITERS = LockClass(
    "sb_writers#5", "{.+.+}", (LD_WAIT_INV, LD_WAIT_INV), "percpu_down_read", validate=False
)
OF_MUTEX = LockClass("&of->mutex#2", validate=False)
# device_lock(): lockdep_set_novalidate_class(&dev->mutex) in device_initialize().
DEV_MUTEX = LockClass("&dev->mutex", "{....}", validate=False)
# rcu_read_lock() in __flush_work(): rcu_lock_acquire() passes check=0. rcu_lock_map's
# wait types (kernel/rcu/update.c): outer LD_WAIT_FREE, inner LD_WAIT_CONFIG.
RCU_READ_LOCK = LockClass(
    "rcu_read_lock", "{....}", (LD_WAIT_CONFIG, LD_WAIT_FREE), "rcu_read_lock", validate=False
)
SB_WRITERS_ADDR = 0xFFFF888103A2C488


@dataclass(frozen=True)
class Held:
    """A lock the task holds (``struct held_lock``): its class, address and where it was
    taken. The stack is kept raw and symbolized only for a report."""

    cls: LockClass
    addr: int
    at: str
    frames: Frames

    def describe(self) -> str:
        """print_lock(): ``address (name){usage}-{i:o}, at: site``."""
        return f"{self.addr:016x} {self.cls.describe()}, at: {symbolize(self.at, None)}"


_held: contextvars.ContextVar[tuple[Held, ...]] = contextvars.ContextVar("held", default=())


def _taking(cls: LockClass, addr: int, at: str) -> Held:
    """The held_lock for ``cls`` taken now at function ``at`` (pushed as the innermost frame
    unless it already is), with the locking function on top."""
    raw = current_frames()
    if not raw or raw[-1][0] != at:
        raw += frames(at)
    if cls.acquire_fn is not None:
        raw += frames(cls.acquire_fn)
    return Held(cls, addr, at, raw)


@contextlib.contextmanager
def held(cls: LockClass, addr: int, at: str | None = None) -> Iterator[None]:
    """Hold an unvalidated lock (``validate=False``): it is only listed in reports. It is
    taken at ``at``, or else by the function of the innermost frame."""
    assert not cls.validate
    if at is None:
        raw = current_frames()
        at = raw[-1][0] if raw else "lock_acquire"
    token = _held.set((*_held.get(), _taking(cls, addr, at)))
    try:
        yield
    finally:
        _held.reset(token)


def _trace(raw: Frames, *top: str) -> tuple[str, ...]:
    """A stack as print_lock_trace() prints it: innermost first, ``top`` frames above it."""
    return (*(symbolize(f, None) for f in top), *(symbolize(n, m) for n, m in reversed(raw)))


class Lockdep:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.debug_locks = True
        # after -> {before: raw stack that first took "after" while holding "before"}
        self._deps: dict[LockClass, dict[LockClass, Frames]] = {}
        self._active_classes: dict[str, LockClass] = {}

    def reset(self) -> None:
        """Lock debugging on, with no dependency learnt: as lockdep is after boot, so that a
        cycle made again is reported again. The classes keep their names (``kn->active#N``)."""
        self.debug_locks = True
        self._deps.clear()

    def debug_locks_off(self) -> bool:
        """Turn lock debugging off; True if it was on (debug_locks_off())."""
        was_on = self.debug_locks
        self.debug_locks = False
        return was_on

    def kn_active_class(self, key: str) -> LockClass:
        """The lockdep class of a kernfs node's active reference (one per attribute)."""
        if key not in self._active_classes:
            number = len(self._active_classes) + 4
            self._active_classes[key] = LockClass(
                f"kn->active#{number}", "{++++}", (LD_WAIT_INV, LD_WAIT_INV), None
            )
        return self._active_classes[key]

    def acquire(self, cls: LockClass, addr: int, at: str) -> None:
        """Record ``cls`` (the lock at ``addr``) taken at function ``at`` by the current task,
        checking the order against every lock the task holds."""
        taken = _taking(cls, addr, at)
        for holding in _held.get():
            if holding.cls.validate:
                self._add_dependency(holding, taken)
        _held.set((*_held.get(), taken))

    def release(self, cls: LockClass) -> None:
        held_locks = _held.get()
        for i in range(len(held_locks) - 1, -1, -1):
            if held_locks[i].cls is cls:
                _held.set(held_locks[:i] + held_locks[i + 1 :])
                return

    @contextlib.contextmanager
    def holding(self, cls: LockClass, addr: int, at: str) -> Iterator[None]:
        self.acquire(cls, addr, at)
        try:
            yield
        finally:
            self.release(cls)

    def _add_dependency(self, holding: Held, new: Held) -> None:
        if holding.cls is new.cls or holding.cls in self._deps.get(new.cls, {}):
            return
        # Does "new" already (transitively) come before "holding"? Then holding -> new closes
        # a cycle (check_noncircular()).
        chain = self._path(holding.cls, new.cls)
        self._deps.setdefault(new.cls, {})[holding.cls] = new.frames
        if chain is not None and self.debug_locks_off():
            self._report(holding, new, chain)

    def _path(self, start: LockClass, target: LockClass) -> list[LockClass] | None:
        """A chain target -> ... -> start of recorded orders ("target taken, then ..."), if any:
        i.e. classes that were acquired while holding ``target``, leading to ``start``."""
        # _deps[after][before]: "before" was held when "after" was taken.
        frontier: list[list[LockClass]] = [[start]]
        seen = {start}
        while frontier:
            path = frontier.pop()
            for before in self._deps.get(path[-1], {}):
                if before is target:
                    return [*path, before]
                if before not in seen:
                    seen.add(before)
                    frontier.append([*path, before])
        return None

    @staticmethod
    def _held_locks(comm: str, pid: int) -> list[str]:
        """lockdep_print_held_locks()"""
        held_locks = _held.get()
        if not held_locks:
            return [f"no locks held by {comm}/{pid}."]
        plural = "lock" if len(held_locks) == 1 else "locks"
        return [f"{len(held_locks)} {plural} held by {comm}/{pid}:"] + [
            f" #{i}: {h.describe()}" for i, h in enumerate(held_locks)
        ]

    def _report(self, holding: Held, new: Held, chain: list[LockClass]) -> None:
        """print_circular_bug(): the new lock is #0; the lock the task holds has the highest
        number, and each entry shows the stack that took it while holding the one below."""
        kernel = self.kernel
        task = current()
        lines = [
            "",
            RULER,
            "WARNING: possible circular locking dependency detected",
            f"{kernel.uname} {kernel.taint.print_tainted()}",
            THIN,
            f"{task.comm}/{task.pid} is trying to acquire lock:",
            new.describe(),
            "",
            "but task is already holding lock:",
            holding.describe(),
            "",
            "which lock already depends on the new lock.",
            "",
            "",
            "the existing dependency chain (in reverse order) is:",
        ]
        # chain = [holding, x, ..., new]: chain[i] was taken while holding chain[i + 1].
        for i, (after, before) in enumerate(itertools.pairwise(chain)):
            lines.append("")
            lines.append(f"-> #{len(chain) - 1 - i} {after.describe()}:")
            lines.extend(f"       {frame}" for frame in _trace(self._deps[after][before]))
        lines.append("")
        lines.append(f"-> #0 {new.cls.describe()}:")
        lines.extend(
            f"       {frame}" for frame in _trace(new.frames, "__lock_acquire", "lock_acquire")
        )
        lines += ["", "other info that might help us debug this:", ""]
        lines += self._scenario(new.cls, chain[1], holding.cls)
        lines += [
            "",
            " *** DEADLOCK ***",
            "",
            *self._held_locks(task.comm, task.pid),
            "",
            "stack backtrace:",
            *kernel.dump_stack_header(),
            "Call Trace:",
            " <TASK>",
            *(
                f" {frame}"
                for frame in _trace(
                    new.frames,
                    "dump_stack_lvl",
                    "dump_stack",
                    "print_circular_bug",
                    "check_noncircular",
                    "__lock_acquire",
                    "lock_acquire",
                )
            ),
            " </TASK>",
        ]
        for line in lines:
            kernel.log.emit(KERN_WARNING, line)

    @staticmethod
    def _scenario(source: LockClass, parent: LockClass, target: LockClass) -> list[str]:
        """print_circular_lock_scenario(): ``parent`` is the lock the task held when it took
        ``target`` (the one it holds now); the chain line only when there are three."""
        lines = []
        if parent is not source:
            lines += [
                "Chain exists of:",
                f"  {source.name} --> {parent.name} --> {target.name}",
                "",
            ]
        pad = " " * 31
        return [
            *lines,
            " Possible unsafe locking scenario:",
            "",
            "       CPU0                    CPU1",
            "       ----                    ----",
            f"  lock({target.name});",
            f"{pad}lock({parent.name});",
            f"{pad}lock({target.name});",
            f"  lock({source.name});",
        ]
