"""Calling into driver code: the frame it runs in, the module it belongs to, error injection.

Every function of a driver that the core calls (probe, remove, file operations, interrupt
handlers, tasklets, work, timers, devres actions, release callbacks) is called through
:func:`call` or :func:`call_atomic`. That is what puts ``cdev_devm_read+0x20/0x50 [cdev_devm]``
in a report without the driver saying anything: the frame is the function's own name, and the
module is the one whose code it is (the ``THIS_MODULE`` of the file that defined it). A
driver's own helpers get a frame with :func:`kernel_function`.

The kernel being run is known here too (:func:`current_kernel`), for the few calls of the
driver API that have no object to find it from (``kzalloc``, ``alloc_chrdev_region``).

Error injection is the kernel's fail_function (kernel/fail_function.c): a function in
``Kernel.fail_function`` returns that errno instead of running, which is how a scenario's
``probe_errno`` makes a probe fail. It is keyed by the function itself, as the kernel's is by
address: two loads of one driver file are two copies of its code.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ..kernfs import ErrnoError
from .stacktrace import Frames, enter, frames

if TYPE_CHECKING:
    from .kernel import Kernel
    from .module import Module

P = ParamSpec("P")
R = TypeVar("R")

_kernel: contextvars.ContextVar[Kernel | None] = contextvars.ContextVar("kernel", default=None)


def current_kernel() -> Kernel:
    """The kernel whose code is running."""
    kernel = _kernel.get()
    if kernel is None:
        raise RuntimeError("no kernel is running this code (called outside the engine?)")
    return kernel


@contextlib.contextmanager
def running(kernel: Kernel) -> Iterator[None]:
    """Run the block as ``kernel``'s code (loading a driver file, a test poking the engine)."""
    token = _kernel.set(kernel)
    try:
        yield
    finally:
        _kernel.reset(token)


def set_current_kernel(kernel: Kernel) -> None:
    """Make ``kernel`` the running one for the rest of this task (a daemon, a kernel thread)."""
    _kernel.set(kernel)


def module_of(fn: Callable[..., object]) -> Module | None:
    """The module whose code ``fn`` is: THIS_MODULE in the file that defined it."""
    fn = inspect.unwrap(fn)
    func = getattr(fn, "__func__", fn)  # a bound method's function
    module = getattr(func, "__globals__", {}).get("THIS_MODULE")
    from .module import Module  # noqa: PLC0415 (module.py calls into this one)

    return module if isinstance(module, Module) else None


def _symbol(fn: Callable[..., object]) -> tuple[str, str | None]:
    module = module_of(fn)
    return getattr(fn, "__name__", type(fn).__name__), module.name if module else None


@functools.lru_cache(maxsize=4096)
def _frames_of(func: Callable[..., object]) -> Frames:
    """The frame of a driver function, built once: it is entered at every call (every read
    of a device or a dump comes through here)."""
    name, module = _symbol(func)
    return frames(name, module=module)


def _frame(fn: Callable[..., object]) -> enter:
    return enter(_frames_of(getattr(fn, "__func__", fn)))  # a bound method's function


def _injected(kernel: Kernel, fn: Callable[..., object]) -> None:
    errno = kernel.fail_function.get(fn)
    if errno is not None:
        raise ErrnoError(errno)


async def call(kernel: Kernel, fn: Callable[..., object], *args: Any) -> Any:
    """Run driver function ``fn`` (async or not) in its own frame, on ``kernel``; its
    result."""
    token = _kernel.set(kernel)
    try:
        with _frame(fn):
            _injected(kernel, fn)
            result = fn(*args)
            if inspect.isawaitable(result):
                return await result
            return result
    finally:
        _kernel.reset(token)


def call_atomic(kernel: Kernel, fn: Callable[..., R], *args: Any) -> R:
    """Run a driver function that must not sleep (an interrupt handler, a tasklet, a timer,
    poll, a release callback) in its own frame."""
    token = _kernel.set(kernel)
    try:
        with _frame(fn):
            _injected(kernel, fn)
            result = fn(*args)
            if inspect.isawaitable(result):
                name = _symbol(fn)[0]
                raise TypeError(f"{name} runs in atomic context and cannot sleep (async def)")
            return result
    finally:
        _kernel.reset(token)


def kernel_function(fn: Callable[P, R]) -> Callable[P, R]:
    """Give a driver's own helper function a frame of its own in reports (a function the
    compiler did not inline). Works on ``def`` and ``async def``."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with _frame(fn):
                return await fn(*args, **kwargs)

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _frame(fn):
            return fn(*args, **kwargs)

    return wrapper
