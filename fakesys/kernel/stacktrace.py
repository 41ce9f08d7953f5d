"""The simulated call stack, for the "Call Trace", "Allocated by" and "Freed by" parts of reports.

Engine functions that matter in a report enter a frame (``with frame("unbind_store"):``); a
report takes the frames in force, innermost first. Entry points from user space push the
system-call frames that lead to them, so a report reads like one from a real kernel.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from .kallsyms import symbol

_frames: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("frames", default=())

SYSCALL_READ = ("entry_SYSCALL_64_after_hwframe", "do_syscall_64", "ksys_read", "vfs_read")
SYSCALL_WRITE = ("entry_SYSCALL_64_after_hwframe", "do_syscall_64", "ksys_write", "vfs_write")
SYSCALL_CLOSE = (
    "entry_SYSCALL_64_after_hwframe",
    "do_syscall_64",
    "__x64_sys_close",
    "fput_close_sync",
    "__fput",
)
SYSCALL_OPEN = (
    "entry_SYSCALL_64_after_hwframe",
    "do_syscall_64",
    "do_sys_openat2",
    "do_filp_open",
    "vfs_open",
    "do_dentry_open",
)


@contextlib.contextmanager
def frame(*names: str, module: str | None = None) -> Iterator[None]:
    """Enter the frames ``names``, outermost first; ``module`` marks them as a module's."""
    token = _frames.set(_frames.get() + tuple(symbol(n, module) for n in names))
    try:
        yield
    finally:
        _frames.reset(token)


def stack(*inner: str, module: str | None = None) -> tuple[str, ...]:
    """The current stack with ``inner`` frames (outermost first) on top, innermost first."""
    return tuple(reversed(_frames.get() + tuple(symbol(n, module) for n in inner)))
