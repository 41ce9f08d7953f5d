"""The simulated call stack, for the "Call Trace", "Allocated by" and "Freed by" parts of reports.

Engine functions that matter in a report enter a frame (``with frame("unbind_store"):``); a
report takes the frames in force, innermost first. Entry points from user space push the
system-call frames that lead to them, so a report reads like one from a real kernel.

Frames are kept as raw names and turned into ``name+0xoff/0xsize [module]`` only when a stack
is taken, because entering frames is on the path of every attribute read and taking a stack
happens only for a report.
"""

from __future__ import annotations

import contextvars
import functools

from .kallsyms import symbol

Frame = tuple[str, str | None]
Frames = tuple[Frame, ...]

_frames: contextvars.ContextVar[Frames] = contextvars.ContextVar("frames", default=())


def frames(*names: str, module: str | None = None) -> Frames:
    """Frames to push with :func:`enter`, built once."""
    return tuple([(name, module) for name in names])


_SYSCALL = ("entry_SYSCALL_64_after_hwframe", "do_syscall_64")
SYSCALL_READ = frames(*_SYSCALL, "x64_sys_call", "__x64_sys_read", "ksys_read", "vfs_read")
SYSCALL_WRITE = frames(*_SYSCALL, "x64_sys_call", "__x64_sys_write", "ksys_write", "vfs_write")
# The last close(2) of a file releases it on the way back to user space (fs/file_table.c).
SYSCALL_CLOSE = frames(*_SYSCALL, "syscall_exit_to_user_mode", "task_work_run", "__fput")
SYSCALL_OPEN = frames(
    *_SYSCALL,
    "x64_sys_call",
    "__x64_sys_openat",
    "do_sys_openat2",
    "do_filp_open",
    "path_openat",
    "vfs_open",
    "do_dentry_open",
)
# The boot: pid 1 before it runs init, in the initcalls (a platform's devices are added there)
BOOT_FRAMES = frames(
    "ret_from_fork_asm",
    "ret_from_fork",
    "kernel_init",
    "kernel_init_freeable",
    "do_initcalls",
    "do_initcall_level",
    "do_one_initcall",
)
# insmod and rmmod: finit_module(2) and delete_module(2), whoever stands for them
SYSCALL_FINIT_MODULE = frames(
    *_SYSCALL,
    "x64_sys_call",
    "__x64_sys_finit_module",
    "idempotent_init_module",
    "init_module_from_file",
    "load_module",
    "do_init_module",
    "do_one_initcall",
)
SYSCALL_DELETE_MODULE = frames(*_SYSCALL, "x64_sys_call", "__x64_sys_delete_module")


class enter:
    """Enter prebuilt frames, outermost first. A class, not a generator-based context manager:
    it is on the path of every attribute read, and costs a third of one."""

    __slots__ = ("_outer_first", "_token")

    def __init__(self, outer_first: Frames) -> None:
        self._outer_first = outer_first

    def __enter__(self) -> None:
        self._token = _frames.set(_frames.get() + self._outer_first)

    def __exit__(self, *exc_info: object) -> None:
        _frames.reset(self._token)


class as_syscall(enter):
    """Run the block on the stack of system call ``outer_first`` alone: what the engine does
    for a control file that stands for a system call (``init_module`` for insmod)."""

    __slots__ = ()

    def __enter__(self) -> None:
        self._token = _frames.set(self._outer_first)


def frame(*names: str, module: str | None = None) -> enter:
    """Enter the frames ``names``, outermost first; ``module`` marks them as a module's."""
    return enter(_frames_once(names, module))


@functools.lru_cache(maxsize=4096)
def _frames_once(names: tuple[str, ...], module: str | None) -> Frames:
    return frames(*names, module=module)


@functools.lru_cache(maxsize=4096)
def symbolize(name: str, module: str | None) -> str:
    """One frame as ``%pS`` prints it."""
    return symbol(name, module)


def current_frames() -> Frames:
    """The frames in force, outermost first, unsymbolized (cheap: for a stack that may never
    be printed)."""
    return _frames.get()


def current_module_name() -> str | None:
    """The module of the innermost frame that belongs to one: whose code is calling."""
    return next((module for _, module in reversed(_frames.get()) if module), None)


def stack(*inner: str, module: str | None = None) -> tuple[str, ...]:
    """The current stack with ``inner`` frames (outermost first) on top, innermost first."""
    raw = _frames.get() + frames(*inner, module=module)
    return tuple(symbolize(name, mod) for name, mod in reversed(raw))
