"""``current``: the task on whose behalf the engine runs.

A request from a program carries its pid (the opener's, for I/O on a handle); work the engine
does by itself runs as the kernel thread that would do it in Linux (``swapper/0`` while booting,
a ``kworker`` for deferred work).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from ..kernfs import current_caller


@dataclass(frozen=True)
class Task:
    pid: int
    comm: str
    uid: int = 0


BOOT_TASK = Task(1, "swapper/0")
_kernel_thread: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
    "kernel_thread", default=None
)


def current() -> Task:
    """The task running now, with its command name read from /proc when it is a process."""
    caller = current_caller.get()
    if caller is None:
        return _kernel_thread.get() or BOOT_TASK
    return Task(caller.pid, _comm_of(caller.pid), caller.uid)


def _comm_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().strip()[:15]
    except OSError:
        return "?"


# The pids kernel threads have on a freshly booted two-CPU machine (kthreadd is 2, and the
# per-CPU threads and the early workers follow it); the idle task is 0.
KERNEL_THREAD_PIDS = {
    "swapper/0": 0,
    "kworker/u8:0": 11,
    "ksoftirqd/0": 15,
    "kworker/u8:2": 52,
}


def run_as_kernel_thread(comm: str) -> contextvars.Token[Task | None]:
    """Mark the current trio task as the kernel thread ``comm`` (e.g. ``kworker/u8:2``)."""
    current_caller.set(None)
    return _kernel_thread.set(Task(KERNEL_THREAD_PIDS.get(comm, 2), comm))
