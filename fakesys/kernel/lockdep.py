"""Lock dependency checking (kernel/locking/lockdep.c), for the locks fakesys simulates.

Every time a task acquires a lock while holding others, the order "held → acquired" is
recorded between the two lock *classes*, with the stack that made it. A new order that closes
a cycle is a possible deadlock, reported as lockdep does ("possible circular locking
dependency detected", with the chain and the stacks), whether or not the tasks involved ever
actually wait for each other at the same moment. As in the kernel, the first report turns lock
debugging off (``debug_locks``), and so does the first taint of the kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .printk import KERN_WARNING
from .sched import current
from .stacktrace import stack

if TYPE_CHECKING:
    from .kernel import Kernel

RULER = "=" * 54
THIN = "-" * 54


@dataclass(frozen=True, eq=False)
class LockClass:
    """A lock class: all locks initialised at one place share it (``&devcd->mutex``)."""

    name: str


@dataclass(frozen=True)
class Held:
    cls: LockClass
    at: str
    stack: tuple[str, ...]


def _site(frames: tuple[str, ...]) -> str:
    """Where a lock was taken: the first frame below lock_acquire()."""
    return next((f for f in frames if not f.startswith("lock_acquire+")), "?")


_held: contextvars.ContextVar[tuple[Held, ...]] = contextvars.ContextVar("held", default=())


class Lockdep:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.debug_locks = True
        # after -> {before: stack that first took "after" while holding "before"}
        self._deps: dict[LockClass, dict[LockClass, tuple[str, ...]]] = {}
        self._active_classes: dict[str, LockClass] = {}

    def debug_locks_off(self) -> bool:
        """Turn lock debugging off; True if it was on (debug_locks_off())."""
        was_on = self.debug_locks
        self.debug_locks = False
        return was_on

    def kn_active_class(self, key: str) -> LockClass:
        """The lockdep class of a kernfs node's active reference (one per attribute)."""
        if key not in self._active_classes:
            self._active_classes[key] = LockClass(f"kn->active#{len(self._active_classes) + 4}")
        return self._active_classes[key]

    def acquire(self, cls: LockClass, at: str) -> None:
        """Record ``cls`` taken at function ``at`` by the current task, checking the order."""
        acquired_stack = stack()
        if not acquired_stack or not acquired_stack[0].startswith(f"{at}+"):
            acquired_stack = stack(at)
        acquired_stack = (*stack("lock_acquire")[:1], *acquired_stack)
        for held in _held.get():
            self._add_dependency(held, cls, acquired_stack)
        _held.set((*_held.get(), Held(cls, at, acquired_stack)))

    def release(self, cls: LockClass) -> None:
        held = _held.get()
        for i in range(len(held) - 1, -1, -1):
            if held[i].cls is cls:
                _held.set(held[:i] + held[i + 1 :])
                return

    @contextlib.contextmanager
    def holding(self, cls: LockClass, at: str) -> Iterator[None]:
        self.acquire(cls, at)
        try:
            yield
        finally:
            self.release(cls)

    def _add_dependency(self, held: Held, new: LockClass, new_stack: tuple[str, ...]) -> None:
        if held.cls is new or held.cls in self._deps.get(new, {}):
            return
        # Does "new" already (transitively) come before "held"? Then held -> new closes a cycle.
        chain = self._path(held.cls, new)
        self._deps.setdefault(new, {})[held.cls] = new_stack
        if chain is not None and self.debug_locks_off():
            self._report(held, new, chain, new_stack)

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
        held = _held.get()
        if not held:
            return [f"no locks held by {comm}/{pid}."]
        plural = "lock" if len(held) == 1 else "locks"
        return [f"{len(held)} {plural} held by {comm}/{pid}:"] + [
            f" #{i}: ({h.cls.name}), at: {_site(h.stack)}" for i, h in enumerate(held)
        ]

    def _report(
        self, held: Held, new: LockClass, chain: list[LockClass], new_stack: tuple[str, ...]
    ) -> None:
        """print_circular_bug()"""
        kernel = self.kernel
        task = current()
        lines = [
            "",
            RULER,
            "WARNING: possible circular locking dependency detected",
            f"{kernel.uname} {kernel.taint.print_tainted()}",
            THIN,
            f"{task.comm}/{task.pid} is trying to acquire lock:",
            f"({new.name}), at: {_site(new_stack)}",
            "",
            "but task is already holding lock:",
            f"({held.cls.name}), at: {_site(held.stack)}",
            "",
            "which lock already depends on the new lock.",
            "",
            "",
            "the existing dependency chain (in reverse order) is:",
        ]
        # chain = [held, x, ..., new]: new was held when ... was taken, ..., up to held.
        links = list(zip(chain[1:], chain[:-1], strict=True))
        for number, (before, after) in reversed(list(enumerate(links, start=1))):
            lines.append("")
            lines.append(f"-> #{number} ({after.name}):")
            lines.extend(f"       {frame}" for frame in self._deps[after][before])
        lines.append("")
        lines.append(f"-> #0 ({new.name}):")
        lines.extend(f"       {frame}" for frame in new_stack)
        lines += [
            "",
            "other info that might help us debug this:",
            "",
            "Chain exists of:",
            "  " + " --> ".join(c.name for c in [new, *reversed(chain[1:-1]), held.cls]),
            "",
            " Possible unsafe locking scenario:",
            "",
            "       CPU0                    CPU1",
            "       ----                    ----",
            f"  lock({held.cls.name});",
            f"{' ' * 31}lock({chain[-2].name if len(chain) > 2 else new.name});",
            f"{' ' * 31}lock({held.cls.name});",
            f"  lock({new.name});",
            "",
            " *** DEADLOCK ***",
            "",
            *self._held_locks(task.comm, task.pid),
            "",
            "stack backtrace:",
            *kernel.dump_stack_header(),
            "Call Trace:",
            " <TASK>",
            *(f" {frame}" for frame in new_stack),
            " </TASK>",
        ]
        for line in lines:
            kernel.log.emit(KERN_WARNING, line)
