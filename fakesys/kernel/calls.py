"""Calling into driver code: the frame it runs in, the module it belongs to, error injection.

Every function of a driver that the core calls (probe, remove, file operations, interrupt
handlers, tasklets, work, timers, devres actions, release callbacks) is called through
:func:`call` or :func:`call_atomic`. That is what puts ``cdev_devm_read+0x20/0x50 [cdev_devm]``
in a report without the driver saying anything: the frame is the function's own name, and the
module is the one whose code it is (the ``THIS_MODULE`` of the file that defined it). A
driver's own helpers get a frame with :func:`kernel_function`.

The kernel being run is known here too (:func:`current_kernel`), for the few calls of the
driver API that have no object to find it from (``kzalloc``, ``alloc_chrdev_region``).

The module whose code runs is known too: a driver function that sleeps while its module is
unloaded wakes up in freed text. :func:`resume_module_code` is called where
a sleep returns to driver code (and where a driver function returns to its caller), and ends
the task with the page-fault oops an instruction fetch there gives.

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
#: The module whose code runs now (None: built-in code).
_code_module: contextvars.ContextVar[Module | None] = contextvars.ContextVar(
    "code_module", default=None
)


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
    """The module whose code ``fn`` is: THIS_MODULE in the file that defined it, or the one a
    function made for a module says (``__this_module__``: module_driver()'s init and exit)."""
    fn = inspect.unwrap(fn)
    func = getattr(fn, "__func__", fn)  # a bound method's function
    module = getattr(func, "__this_module__", None) or getattr(func, "__globals__", {}).get(
        "THIS_MODULE"
    )
    from .module import Module  # noqa: PLC0415 (module.py calls into this one)

    return module if isinstance(module, Module) else None


def resume_module_code() -> None:
    """The running task goes back to the code of the module of the innermost driver function
    (a sleep in it ends, or a function it called returns): if the module was unloaded
    meanwhile, its text is gone and the instruction fetch faults."""
    module = _code_module.get()
    if module is not None and module.freed:
        from .panic import module_text_fault  # noqa: PLC0415 (panic is below this module)

        module_text_fault(current_kernel(), module)


def _name(fn: Callable[..., object]) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


@functools.lru_cache(maxsize=4096)
def _code_of(func: Callable[..., object]) -> tuple[Frames, Module | None]:
    """The frame of a driver function and its module, found once: they are entered at every
    call (every read of a device or a dump comes through here)."""
    module = module_of(func)
    return frames(_name(func), module=module.name if module is not None else None), module


class _in_function:
    """Run as ``fn``: on ``kernel``, as the code of its module, in its frame. A class, as
    :class:`.stacktrace.enter` is, for its cost on every call."""

    __slots__ = ("_enter", "_kernel", "_kernel_token", "_module", "_module_token")

    def __init__(self, kernel: Kernel | None, fn: Callable[..., object]) -> None:
        code_frames, self._module = _code_of(getattr(fn, "__func__", fn))
        self._kernel = kernel
        self._enter = enter(code_frames)

    def __enter__(self) -> None:
        self._kernel_token = _kernel.set(self._kernel)
        self._module_token = _code_module.set(self._module)
        self._enter.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._enter.__exit__()
        _code_module.reset(self._module_token)
        _kernel.reset(self._kernel_token)


def _injected(kernel: Kernel, fn: Callable[..., object]) -> None:
    errno = kernel.fail_function.get(fn)
    if errno is not None:
        raise ErrnoError(errno)


async def call(kernel: Kernel, fn: Callable[..., object], *args: Any) -> Any:
    """Run driver function ``fn`` (async or not) in its own frame, on ``kernel``; its
    result."""
    with _in_function(kernel, fn):
        _injected(kernel, fn)
        result = fn(*args)
        if inspect.isawaitable(result):
            return await result
        return result


def call_atomic(kernel: Kernel, fn: Callable[..., R], *args: Any) -> R:
    """Run a driver function that must not sleep (an interrupt handler, a tasklet, a timer,
    poll, a release callback) in its own frame."""
    with _in_function(kernel, fn):
        _injected(kernel, fn)
        result = fn(*args)
        if inspect.isawaitable(result):
            raise TypeError(f"{_name(fn)} runs in atomic context and cannot sleep (async def)")
        return result


def kernel_function(fn: Callable[P, R]) -> Callable[P, R]:
    """Give a driver's own helper function a frame of its own in reports (a function the
    compiler did not inline). Works on ``def`` and ``async def``; an async one that returns
    to a caller whose module went while it slept faults there (:func:`resume_module_code`)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with _in_function(_kernel.get(), fn):
                result = await fn(*args, **kwargs)
            resume_module_code()
            return result

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _in_function(_kernel.get(), fn):
            return fn(*args, **kwargs)

    return wrapper
