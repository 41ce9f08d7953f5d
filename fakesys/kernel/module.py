"""Loadable modules (kernel/module/main.c): loading, reference counts, unloading, /sys/module.

A module is built from driver files (Python source), as a ``.ko`` is built from C files.
Loading it executes each file afresh, as insmod gives every load fresh code and data: the
file's globals are the module's static variables, ``THIS_MODULE`` (from :func:`this_module`)
is the module, and what the file declares with :func:`module_init`, :func:`module_exit` and
:func:`module_param` becomes the module's init, exit and parameters. Objects the file makes
at load (its driver structures, its file operations) live in the module's memory, which is
freed when the module is unloaded: code that reaches them afterwards (the 2002 driverfs race)
reads freed memory and is reported.

try_module_get() fails once the module is going; delete_module() refuses with EWOULDBLOCK
while the count is above zero or another module uses this one, and with EBUSY for a module
that has an init but no exit, as ``rmmod`` sees it.
"""

from __future__ import annotations

import contextvars
import errno
import importlib.util
import itertools
import sys
import types
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..kernfs import ErrnoError, KernfsNode
from .calls import call, running
from .kasan import MODULE_MEMORY
from .kobject_uevent import kobject_synth_uevent
from .sched import current
from .slab import Object, Struct, Track
from .stacktrace import frame, stack
from .sysfs import RO, WO, SysfsAttr, create_file

if TYPE_CHECKING:
    from .driver import Driver
    from .kernel import Kernel

MODULE_STATE_LIVE = "live"
MODULE_STATE_COMING = "coming"
MODULE_STATE_GOING = "going"

_MODULE_BASE = 0xFFFFFFFFC0000000  # MODULES_VADDR on x86-64
S = TypeVar("S", bound=Struct)
InitFn = Callable[[], Awaitable[None] | None]


class Module:
    """``struct module``."""

    _bases = itertools.count()

    def __init__(self, kernel: Kernel, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.refcnt = 0
        self.state = MODULE_STATE_COMING
        self.holders: list[Module] = []
        self.uses: list[Module] = []
        self.drivers: list[Driver] = []
        self.kn: KernfsNode | None = None
        #: The module's init and exit functions, in the order the files declared them.
        self.inits: list[InitFn] = []
        self.exits: list[InitFn] = []
        #: Values given at load (``insmod m.ko name=value``); files read them with module_param().
        self.params: dict[str, object] = {}
        #: The module's memory: what its files allocated at load, freed at unload.
        self.memory: list[Object] = []
        #: The parameters shown in ``parameters/``, with their modes.
        self.param_perms: dict[str, int] = {}
        self.param_defaults: dict[str, object] = {}
        #: The devcoredump core this module's dumps go to, if not the kernel's.
        self.devcoredump_core: str | None = None
        self._next_static = _MODULE_BASE + next(Module._bases) * 0x100000

    def __repr__(self) -> str:
        return f"<Module {self.name}>"

    def static_memory(self, cls: type[Struct]) -> Object:
        """Room for a ``cls`` in the module's memory (a static variable of the module)."""
        size = cls.__c_size__
        addr = self._next_static
        self._next_static += -(-size // 64) * 64
        memory = Object(
            self.kernel.slab, addr, size, MODULE_MEMORY, f"struct {cls.__c_name__} [{self.name}]",
            Track(current(), stack("load_module")),
        )  # fmt: skip
        self.memory.append(memory)
        return memory

    def load(self) -> None:
        """What load_module() leaves behind: ``/sys/module/<name>/``."""
        root = self.kernel.kernfs
        self.kn = root.create_dir(self.kernel.module_kn, self.name)
        for attr in MODULE_ATTRS:
            create_file(root, self.kn, self, attr)
        root.create_dir(self.kn, "holders")
        root.create_dir(self.kn, "drivers")
        self.kernel.modules[self.name] = self

    def use(self, other: Module) -> None:
        """This module depends on ``other`` (ref_module(), add_usage_links())."""
        self.uses.append(other)
        other.holders.append(self)
        assert other.kn is not None and self.kn is not None
        holders = other.kn.lookup("holders")
        assert holders is not None
        self.kernel.kernfs.create_link(holders, self.name, self.kn)

    def try_get(self) -> bool:
        """try_module_get(): fails once the module is going away."""
        if self.state != MODULE_STATE_LIVE:
            return False
        self.refcnt += 1
        return True

    def put(self) -> None:
        """module_put()."""
        if self.refcnt <= 0:
            raise RuntimeError(f"module_put() of {self.name} with no reference")
        self.refcnt -= 1

    def add_driver(self, drv: Driver) -> None:
        """module_add_driver(): ``<drv>/module`` and ``/sys/module/<m>/drivers/<bus>:<drv>``."""
        root = self.kernel.kernfs
        assert self.kn is not None and drv.kn is not None
        root.create_link(drv.kn, "module", self.kn)
        drivers = self.kn.lookup("drivers")
        assert drivers is not None
        root.create_link(drivers, f"{drv.bus.name}:{drv.name}", drv.kn)
        self.drivers.append(drv)

    async def remove_driver(self, drv: Driver) -> None:
        root = self.kernel.kernfs
        assert self.kn is not None and drv.kn is not None
        drivers = self.kn.lookup("drivers")
        for kn in (
            drivers.lookup(f"{drv.bus.name}:{drv.name}") if drivers else None,
            drv.kn.lookup("module"),
        ):
            if kn is not None:
                await root.remove(kn)
        self.drivers.remove(drv)

    def add_parameters(self) -> None:
        """``parameters/<name>`` for each parameter with a mode (module_param_sysfs_setup())."""
        if not self.param_perms:
            return
        assert self.kn is not None
        root = self.kernel.kernfs
        parameters = root.create_dir(self.kn, "parameters")
        for name, perm in self.param_perms.items():
            value = self.params.get(name)
            shown = value if value is not None else self.param_defaults.get(name)
            create_file(root, parameters, self, SysfsAttr(name, perm, _param_show(shown)))

    async def unload_sysfs(self) -> None:
        """mod_sysfs_teardown(): the directory, the holder links, the module list."""
        assert self.kn is not None
        await self.kernel.kernfs.remove(self.kn)
        for used in self.uses:
            used.holders.remove(self)
        self.kernel.modules.pop(self.name, None)

    def check_unload(self) -> None:
        """The refusals of delete_module(), in the kernel's order."""
        if self.holders:
            raise ErrnoError(errno.EWOULDBLOCK)
        if self.state != MODULE_STATE_LIVE:
            raise ErrnoError(errno.EBUSY)
        if self.inits and not self.exits:  # "has init but no exit": unloadable without force
            raise ErrnoError(errno.EBUSY)
        if self.refcnt > 0:
            raise ErrnoError(errno.EWOULDBLOCK)

    def free(self) -> None:
        """free_module(): the module's memory goes."""
        with frame("free_module"):
            for memory in self.memory:
                self.kernel.slab.kfree(memory, stack("module_memory_free"))


# -- loading driver files --


class _Loading:
    """What a driver file being executed registers into: its module (None when built in)."""

    def __init__(self, kernel: Kernel, module: Module | None) -> None:
        self.kernel = kernel
        self.module = module
        self.inits: list[InitFn] = []
        self.exits: list[InitFn] = []
        self.params: dict[str, object] = module.params if module is not None else {}


_loading: contextvars.ContextVar[_Loading | None] = contextvars.ContextVar("loading", default=None)
_load_ids = itertools.count()


def _current_loading(what: str) -> _Loading:
    loading = _loading.get()
    if loading is None:
        raise RuntimeError(f"{what} is only for the top level of a driver file being loaded")
    return loading


def this_module() -> Module | None:
    """THIS_MODULE: the module being loaded (None for a built-in driver file)."""
    return _current_loading("THIS_MODULE").module


def loading_kernel() -> Kernel:
    return _current_loading("a driver definition").kernel


def static(cls: type[S]) -> S:
    """A zeroed ``cls`` in the memory of the module being loaded (built in: never freed)."""
    loading = _current_loading("a static definition")
    if loading.module is None:
        return cls.allocate(None)
    return cls.allocate(loading.module.static_memory(cls))


def module_init(fn: InitFn) -> InitFn:
    """Declare the module's init function (``module_init(fn)``)."""
    _current_loading("module_init()").inits.append(fn)
    return fn


def module_exit(fn: InitFn) -> InitFn:
    """Declare the module's exit function (``module_exit(fn)``)."""
    _current_loading("module_exit()").exits.append(fn)
    return fn


T = TypeVar("T")


def module_param(name: str, default: T, perm: int = 0o444) -> T:
    """``module_param(name, type, perm)``: the value given at load, else ``default``; one of
    the same type is required (EINVAL at load otherwise, as parse_args() refuses it)."""
    loading = _current_loading("module_param()")
    value = loading.params.get(name, default)
    if type(value) is not type(default):
        raise ErrnoError(errno.EINVAL)
    module = loading.module
    if module is not None and perm:
        module.param_perms[name] = perm
        module.param_defaults[name] = default
    return value


def _param_show(value: object) -> Callable[[Module], str]:
    """How param_get_*() prints a value: bools as Y/N, the rest as they are."""
    text = ("Y" if value else "N") if isinstance(value, bool) else str(value)
    return lambda _mod: f"{text}\n"


@contextmanager
def _executing(kernel: Kernel, module: Module | None) -> Iterator[_Loading]:
    loading = _Loading(kernel, module)
    token = _loading.set(loading)
    try:
        with running(kernel):
            yield loading
    finally:
        _loading.reset(token)


def exec_driver_file(kernel: Kernel, module: Module | None, path: Path) -> types.ModuleType:
    """Execute a fresh copy of the driver file ``path`` for ``module``; its init and exit
    functions are added to the module's (or, built in, returned on the code object)."""
    unique = f"fakesys.loaded.{path.stem}_{next(_load_ids)}"
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file")
    code = importlib.util.module_from_spec(spec)
    # Registered while it runs, so that annotations and dataclasses can see its globals.
    sys.modules[unique] = code
    try:
        with _executing(kernel, module) as loading:
            spec.loader.exec_module(code)
    finally:
        del sys.modules[unique]
    code.__dict__["__inits__"] = loading.inits
    code.__dict__["__exits__"] = loading.exits
    if module is not None:
        module.inits += loading.inits
        module.exits += loading.exits
    return code


def exec_driver_files(
    kernel: Kernel, module: Module | None, paths: list[Path]
) -> list[types.ModuleType]:
    return [exec_driver_file(kernel, module, path) for path in paths]


async def run_inits(kernel: Kernel, codes: list[types.ModuleType]) -> None:
    """do_init_module(): each file's init functions in turn. When one fails, the files whose
    init ran are undone with their exits, newest first, and the error is the load's."""
    done: list[types.ModuleType] = []
    with frame("do_init_module", "do_one_initcall"):
        for code in codes:
            try:
                for fn in code.__inits__:
                    await call(kernel, fn)
            except BaseException:
                for undo in reversed(done):
                    for fn in reversed(undo.__exits__):
                        await call(kernel, fn)
                raise
            done.append(code)


async def load_module(
    kernel: Kernel,
    name: str,
    paths: list[Path],
    params: dict[str, object],
    configure: Callable[[list[types.ModuleType]], None] | None = None,
) -> Module:
    """init_module(2) of a module built from ``paths``: its sysfs directory, its files
    executed, ``configure`` given their globals (a scenario's overrides), then its init.
    A failed init leaves nothing behind."""
    if name in kernel.modules:
        raise ErrnoError(errno.EEXIST)
    module = Module(kernel, name)
    module.params = dict(params)
    module.load()
    try:
        codes = exec_driver_files(kernel, module, paths)
        module.add_parameters()
        if configure is not None:
            configure(codes)
        await run_inits(kernel, codes)
    except BaseException:
        module.state = MODULE_STATE_GOING
        await module.unload_sysfs()
        module.free()
        raise
    module.state = MODULE_STATE_LIVE
    return module


async def load_builtin(
    kernel: Kernel,
    paths: list[Path],
    configure: Callable[[list[types.ModuleType]], None] | None = None,
) -> None:
    """Built-in driver files: executed and initialised at boot, never unloaded."""
    codes = exec_driver_files(kernel, None, paths)
    if configure is not None:
        configure(codes)
    await run_inits(kernel, codes)


async def delete_module(kernel: Kernel, name: str) -> None:
    """delete_module(2) without O_TRUNC: refuse a module in use, else run its exit (which
    unregisters its drivers, unbinding their devices) and free it."""
    mod = kernel.modules.get(name)
    if mod is None:
        raise ErrnoError(errno.ENOENT)
    mod.check_unload()
    mod.state = MODULE_STATE_GOING
    with frame("__do_sys_delete_module"):
        for fn in reversed(mod.exits):
            await call(kernel, fn)
    await mod.unload_sysfs()
    mod.free()


def _refcnt_show(mod: Module) -> str:
    return f"{mod.refcnt}\n"


def _initstate_show(mod: Module) -> str:
    return f"{mod.state}\n"


def _taint_show(mod: Module) -> str:
    return "\n"


async def _uevent_store(mod: Module, buf: bytes) -> int:
    kobject_synth_uevent(mod.kernel, f"/module/{mod.name}", "module", [], buf)
    return len(buf)


MODULE_ATTRS = (
    SysfsAttr[Module]("refcnt", RO, _refcnt_show),
    SysfsAttr[Module]("initstate", RO, _initstate_show),
    SysfsAttr[Module]("taint", RO, _taint_show),
    SysfsAttr[Module]("uevent", WO, store=_uevent_store),
)
