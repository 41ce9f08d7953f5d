"""Loadable modules (kernel/module/main.c, kernel/module/sysfs.c, drivers/base/module.c):
loading, reference counts, state, unloading and ``/sys/module/<name>/``.

A module is built from driver files (Python source), as a ``.ko`` is built from C files.
Loading it executes each file afresh, as insmod gives every load fresh code and data: the
file's globals are the module's static variables, ``THIS_MODULE`` (from :func:`this_module`)
is the module, and what the file declares with :func:`module_init`, :func:`module_exit` and
:func:`module_param` becomes the module's init, exit and parameters (``parameters/`` shows
those with a mode). Objects the file makes at load (its driver structures, its file
operations) live in the module's memory, which is freed when the module is unloaded: code
that reaches them afterwards (the 2002 driverfs race) reads freed memory and is reported.

:func:`load_module` does what init_module(2) does. The module is laid out in memory (its
allocated ELF sections, grouped into the core and init memory types, each region page-aligned),
``/sys/module/<name>/`` is created while the module is ``coming`` (mod_sysfs_setup()), the init
function runs, and only then does the module go ``live`` and announce itself with its ``add``
uevent (do_init_module(): "Delay uevent until module has finished its init routine"); its init
memory is freed, so ``initsize`` reads 0 from then on. :func:`delete_module` refuses a module
in use with the kernel's errnos, runs the exit function, takes the sysfs files away
(mod_sysfs_teardown()) and sends ``remove`` before the directory goes.

The directory has what a module built in-tree with CONFIG_MODULE_UNLOAD,
CONFIG_MODULE_SRCVERSION_ALL and CONFIG_KALLSYMS has: ``coresize``, ``holders/``,
``initsize``, ``initstate``, ``notes/``, ``refcnt``, ``sections/``, ``srcversion``,
``taint``, ``uevent``, and ``drivers/`` once its first driver registers.

Limitations: the modules are not ELF files. Their sections, sizes, addresses, build ids and
``srcversion`` are derived from the module's name (stable from run to run, shaped like a small
driver's); ``srcversion`` is a digest of the name where the kernel's is an MD4 of the sources.
No module has a ``MODULE_VERSION`` (``version``), and none taints the kernel: they count as
in-tree and signed.
"""

from __future__ import annotations

import contextvars
import errno
import hashlib
import importlib.util
import itertools
import struct
import sys
import types
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ..kernfs import PAGE_SIZE, ErrnoError, KernfsNode, current_caller
from .calls import call, running
from .kasan import MODULE_MEMORY
from .kobject_uevent import KOBJ_ADD, KOBJ_REMOVE, kobject_synth_uevent, kobject_uevent
from .sched import current
from .slab import Object, Struct, Track
from .stacktrace import SYSCALL_DELETE_MODULE, SYSCALL_FINIT_MODULE, as_syscall, frame, stack
from .sysfs import RO, WO, SysfsAttr, SysfsBinAttr, create_bin_file, create_file

if TYPE_CHECKING:
    from .driver import Driver
    from .kernel import Kernel

MODULE_STATE_LIVE = "live"
MODULE_STATE_COMING = "coming"
MODULE_STATE_GOING = "going"

# enum mod_mem_type (include/linux/module.h)
MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT = range(4)
MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA = range(4, 7)
CORE_TYPES = (MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT)
INIT_TYPES = (MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA)

# x86-64 with KASLR: MODULES_VADDR is __START_KERNEL_map + KERNEL_IMAGE_SIZE (1 GiB), and
# module_load_offset a random number of pages above it, fixed at boot.
MODULES_VADDR = 0xFFFFFFFFC0000000
MODULE_LOAD_OFFSET = 0x1C5000

# "0x" + 16 hex digits + "\n" (kernel/module/sysfs.c)
MODULE_SECT_READ_SIZE = 3 + 64 // 4

NT_GNU_BUILD_ID = 3
LINUX_ELFNOTE_BUILD_SALT = 0x100
LINUX_ELFNOTE_LTO_INFO = 0x101

# The allocated sections of a small driver module, in link order: (name, memory type,
# alignment, base size, how much of the module's digest may add to it). The symbol table is
# copied into init data by layout_symtab(); notes are read-only data.
_SECTIONS = (
    (".text", MOD_TEXT, 16, 0x400, 0x3000),
    (".exit.text", MOD_TEXT, 16, 0x20, 0x100),
    (".init.text", MOD_INIT_TEXT, 16, 0x40, 0x300),
    (".rodata", MOD_RODATA, 32, 0x80, 0x800),
    (".rodata.str1.1", MOD_RODATA, 1, 0x40, 0x400),
    ("__mcount_loc", MOD_RODATA, 8, 0x20, 0x1E0),
    (".note.gnu.build-id", MOD_RODATA, 4, 0, 0),
    (".note.Linux", MOD_RODATA, 4, 0, 0),
    (".data", MOD_DATA, 32, 0x20, 0x200),
    (".gnu.linkonce.this_module", MOD_DATA, 64, 0x600, 0),
    (".bss", MOD_DATA, 32, 0x10, 0x100),
    (".init.data", MOD_INIT_DATA, 8, 0x10, 0x80),
    (".symtab", MOD_INIT_DATA, 8, 0x300, 0x900),
    (".strtab", MOD_INIT_DATA, 1, 0x200, 0x800),
)


def page_align(size: int) -> int:
    return -(-size // PAGE_SIZE) * PAGE_SIZE


def _elf_note(name: bytes, note_type: int, desc: bytes) -> bytes:
    """One ELF note: header, then name and descriptor each padded to 4 bytes."""
    name += b"\0"
    return (
        struct.pack("<III", len(name), len(desc), note_type)
        + name.ljust(-(-len(name) // 4) * 4, b"\0")
        + desc.ljust(-(-len(desc) // 4) * 4, b"\0")
    )


@dataclass(frozen=True)
class ModuleSection:
    name: str
    mem_type: int
    address: int
    size: int
    #: The contents, for a note section (what ``notes/<name>`` reads).
    note: bytes | None = None


class ModuleLayout:
    """Where the module's sections sit: what layout_sections() and move_module() give.

    Each memory type is one allocation from the module area, its size page-aligned; the
    sections of a type follow each other at their alignment.
    """

    def __init__(self, kernel: Kernel, name: str) -> None:
        digest = hashlib.sha256(f"fakesys module {name}".encode()).digest()
        self.build_id = hashlib.sha1(digest).digest()
        self.srcversion = digest.hex().upper()[:23]
        notes = {
            ".note.gnu.build-id": _elf_note(b"GNU", NT_GNU_BUILD_ID, self.build_id),
            # An empty CONFIG_BUILD_SALT (".asciz", one NUL) and the LTO note (no LTO).
            ".note.Linux": _elf_note(b"Linux", LINUX_ELFNOTE_BUILD_SALT, b"\0")
            + _elf_note(b"Linux", LINUX_ELFNOTE_LTO_INFO, struct.pack("<I", 0)),
        }
        sizes: list[tuple[str, int, int, int, bytes | None]] = []
        for i, (section, mem_type, align, base, spread) in enumerate(_SECTIONS):
            note = notes.get(section)
            word = int.from_bytes(digest[2 * i : 2 * i + 2], "little")
            size = len(note) if note is not None else base + (word % spread if spread else 0)
            sizes.append((section, mem_type, align, size, note))
        #: The size of each memory type's region (mod->mem[type].size), page-aligned.
        self.mem_size = dict.fromkeys((*CORE_TYPES, *INIT_TYPES), 0)
        offsets: dict[str, int] = {}
        for section, mem_type, align, size, _ in sizes:
            start = -(-self.mem_size[mem_type] // align) * align
            offsets[section] = start
            self.mem_size[mem_type] = start + size
        self.mem_base: dict[int, int] = {}
        for mem_type, size in self.mem_size.items():
            self.mem_size[mem_type] = page_align(size)
            if size:
                self.mem_base[mem_type] = execmem_alloc(kernel, self.mem_size[mem_type])
        self.sections = tuple(
            ModuleSection(section, t, self.mem_base[t] + offsets[section], size, note)
            for section, t, _, size, note in sizes
        )

    def size(self, mem_types: tuple[int, ...]) -> int:
        return sum(self.mem_size[t] for t in mem_types)

    def free_init(self) -> None:
        """do_init_module(): the init regions are freed and their sizes cleared."""
        for mem_type in INIT_TYPES:
            self.mem_size[mem_type] = 0
            self.mem_base.pop(mem_type, None)


def execmem_alloc(kernel: Kernel, size: int) -> int:
    """A page-aligned region of the module area (mm/execmem.c). Addresses are not reused."""
    address = kernel.module_area_next
    kernel.module_area_next += page_align(size)
    return address


class Module:
    """``struct module``."""

    def __init__(self, kernel: Kernel, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.refcnt = 0
        self.state = MODULE_STATE_COMING
        self.holders: list[Module] = []
        self.uses: list[Module] = []
        self.drivers: list[Driver] = []
        self.layout = ModuleLayout(kernel, name)
        self.kn: KernfsNode | None = None
        self.holders_kn: KernfsNode | None = None
        #: ``drivers/``: created by the first driver that registers (module_add_driver()).
        self.drivers_kn: KernfsNode | None = None
        #: Whether the ``add`` uevent went out: only once init succeeded.
        self.announced = False
        #: The module's init and exit functions, in the order the files declared them.
        self.inits: list[InitFn] = []
        self.exits: list[InitFn] = []
        #: Values given at load (``insmod m.ko name=value``); files read them with module_param().
        self.params: dict[str, object] = {}
        #: The parameters shown in ``parameters/``, with their modes and defaults.
        self.param_perms: dict[str, int] = {}
        self.param_defaults: dict[str, object] = {}
        #: What the module's files allocated at load (its statics), freed with it.
        self.memory: list[Object] = []
        #: The devcoredump core this module's dumps go to, if not the kernel's.
        self.devcoredump_core: str | None = None
        #: free_module() ran: the module's memory, text included, is unmapped.
        self.freed = False

    def __repr__(self) -> str:
        return f"<Module {self.name}>"

    def static_memory(self, cls: type[Struct]) -> Object:
        """Room for a ``cls`` in the module's memory (a static variable of the module)."""
        memory = Object(
            self.kernel.slab, execmem_alloc(self.kernel, cls.__c_size__), cls.__c_size__,
            MODULE_MEMORY, f"struct {cls.__c_name__} [{self.name}]",
            Track(current(), stack("load_module")),
        )  # fmt: skip
        self.memory.append(memory)
        return memory

    def mod_sysfs_setup(self) -> None:
        """``/sys/module/<name>/``: holders/, parameters/, the modinfo attributes, the holders
        links of the modules this one uses, then sections/ and notes/."""
        root = self.kernel.kernfs
        self.kn = root.create_dir(self.kernel.module_kn, self.name)
        self.holders_kn = root.create_dir(self.kn, "holders")
        if self.param_perms:  # module_param_sysfs_setup()
            parameters = root.create_dir(self.kn, "parameters")
            for name, perm in self.param_perms.items():
                value = self.params.get(name, self.param_defaults.get(name))
                create_file(root, parameters, self, SysfsAttr(name, perm, _param_show(value)))
        for attr in MODINFO_ATTRS:
            create_file(root, self.kn, self, attr)
        for used in self.uses:
            self._add_usage_link(used)
        sections = root.create_dir(self.kn, "sections")
        for section in self.layout.sections:
            create_bin_file(root, sections, section, replace(SECTION_ATTR, name=section.name))
        notes = [s for s in self.layout.sections if s.note is not None]
        if notes:
            notes_kn = root.create_dir(self.kn, "notes")
            for section in notes:
                create_bin_file(root, notes_kn, section, replace(NOTE_ATTR, name=section.name))

    async def mod_sysfs_teardown(self) -> None:
        """The usage links, the modinfo attributes, drivers/ and holders/, notes/ and
        sections/; then the ``remove`` uevent (kobject_put() sends it for a kobject that sent
        ``add``) and last the directory."""
        root = self.kernel.kernfs
        assert self.kn is not None
        for used in self.uses:
            assert used.holders_kn is not None
            link = used.holders_kn.lookup(self.name)
            if link is not None:
                await root.remove(link)
        for name in (
            *(attr.name for attr in MODINFO_ATTRS),
            "drivers",
            "holders",
            "parameters",
            "notes",
            "sections",
        ):
            kn = self.kn.lookup(name)
            if kn is not None:
                await root.remove(kn)
        if self.announced:
            self.uevent(KOBJ_REMOVE)
        await root.remove(self.kn)

    @property
    def devpath(self) -> str:
        return f"/module/{self.name}"

    def uevent(self, action: str) -> None:
        """kobject_uevent() of the module's kobject: no variables of its own."""
        kobject_uevent(self.kernel, action, self.devpath, "module", [])

    def _add_usage_link(self, used: Module) -> None:
        assert used.holders_kn is not None and self.kn is not None
        self.kernel.kernfs.create_link(used.holders_kn, self.name, self.kn)

    def use(self, other: Module) -> None:
        """This module depends on ``other`` (ref_module(), add_usage_links())."""
        self.uses.append(other)
        other.holders.append(self)
        if self.kn is not None:
            self._add_usage_link(other)

    def try_get(self) -> bool:
        """try_module_get(): fails once the module is going away (a module still in its init
        can be got: module_is_live() is false only for a going one)."""
        if self.state == MODULE_STATE_GOING:
            return False
        self.refcnt += 1
        return True

    def put(self) -> None:
        """module_put()."""
        if self.refcnt <= 0:
            raise RuntimeError(f"module_put() of {self.name} with no reference")
        self.refcnt -= 1

    def add_driver(self, drv: Driver) -> None:
        """module_add_driver(): ``<drv>/module``, ``drivers/`` if this is the first driver,
        and ``drivers/<bus>:<drv>``."""
        root = self.kernel.kernfs
        assert self.kn is not None and drv.kn is not None
        root.create_link(drv.kn, "module", self.kn)
        if self.drivers_kn is None:
            self.drivers_kn = root.create_dir(self.kn, "drivers")
        root.create_link(self.drivers_kn, f"{drv.bus.name}:{drv.name}", drv.kn)
        self.drivers.append(drv)

    async def remove_driver(self, drv: Driver) -> None:
        """module_remove_driver(): the two links go; ``drivers/`` stays until the module
        goes."""
        root = self.kernel.kernfs
        assert drv.kn is not None
        for kn in (
            self.drivers_kn.lookup(f"{drv.bus.name}:{drv.name}") if self.drivers_kn else None,
            drv.kn.lookup("module"),
        ):
            if kn is not None:
                await root.remove(kn)
        self.drivers.remove(drv)

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

    async def free_module(self) -> None:
        """free_module(): sysfs goes, the module leaves the list, its uses are dropped, and
        its memory is freed."""
        if self.kn is not None:
            await self.mod_sysfs_teardown()
        for used in self.uses:
            used.holders.remove(self)
        self.kernel.modules.pop(self.name, None)
        with frame("free_module"):
            for memory in self.memory:
                self.kernel.slab.kfree(memory, stack("execmem_free"))
        self.freed = True


# -- loading driver files --

S = TypeVar("S", bound=Struct)
T = TypeVar("T")
InitFn = Callable[[], Awaitable[None] | None]


class _Loading:
    """What a driver file being executed registers into: its module (None when built in)."""

    def __init__(
        self, kernel: Kernel, module: Module | None, params: dict[str, object] | None = None
    ) -> None:
        self.kernel = kernel
        self.module = module
        self.inits: list[InitFn] = []
        self.exits: list[InitFn] = []
        self.params = module.params if module is not None else params or {}


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
def _executing(
    kernel: Kernel, module: Module | None, params: dict[str, object] | None
) -> Iterator[_Loading]:
    loading = _Loading(kernel, module, params)
    token = _loading.set(loading)
    try:
        with running(kernel):
            yield loading
    finally:
        _loading.reset(token)


def exec_driver_file(
    kernel: Kernel, module: Module | None, path: Path, params: dict[str, object] | None = None
) -> types.ModuleType:
    """Execute a fresh copy of the driver file ``path`` for ``module``; its init and exit
    functions are added to the module's, and kept on the code object for an unwinding.
    A built-in file (no module) reads ``params``, as given on the kernel command line."""
    unique = f"fakesys.loaded.{path.stem}_{next(_load_ids)}"
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path}: not a Python file")
    code = importlib.util.module_from_spec(spec)
    # Registered while it runs, so that its structs' annotations can be resolved.
    sys.modules[unique] = code
    try:
        with _executing(kernel, module, params) as loading:
            spec.loader.exec_module(code)
    finally:
        del sys.modules[unique]
    code.__dict__["__inits__"] = loading.inits
    code.__dict__["__exits__"] = loading.exits
    if module is not None:
        module.inits += loading.inits
        module.exits += loading.exits
    return code


@dataclass
class InitUnit:
    """The init and exit functions of one file of a module (or of an init given as code)."""

    inits: list[InitFn]
    exits: list[InitFn]


def _unit(code: types.ModuleType) -> InitUnit:
    return InitUnit(code.__inits__, code.__exits__)


async def run_inits(kernel: Kernel, units: list[InitUnit]) -> None:
    """do_one_initcall() of each file's init functions in turn. When one fails, the files
    whose init ran are undone with their exits, newest first, and the error is the load's."""
    done: list[InitUnit] = []
    with as_syscall(SYSCALL_FINIT_MODULE):
        for unit in units:
            try:
                for fn in unit.inits:
                    await call(kernel, fn)
            except BaseException:
                for undo in reversed(done):
                    for fn in reversed(undo.exits):
                        await call(kernel, fn)
                raise
            done.append(unit)


Configure = Callable[[list[types.ModuleType]], None]
ModuleInit = Callable[[Module], Awaitable[None]]


async def load_module(
    kernel: Kernel,
    name: str,
    init: ModuleInit | None = None,
    *,
    paths: Iterable[Path] = (),
    params: dict[str, object] | None = None,
    configure: Configure | None = None,
) -> Module:
    """init_module(2) of a module built from the driver files ``paths``: they are executed
    (the ELF loaded), ``configure`` sees their globals (a scenario's overrides), the module is
    in ``/sys/module`` while ``coming``, with the reference held during initialization; then
    do_init_module() runs the inits, and the module goes live and announces itself.

    ``init``, for a module made in code (a test's), runs after the files' inits with the
    module as its argument; the drivers it registers are unregistered at unload, as the exit
    module_driver() makes would do.

    If anything fails, the module goes as the kernel's failure path takes it: ``going``, sysfs
    torn down with no uevent, since ``add`` was never sent, its memory freed; the error is
    raised again.
    """
    if name in kernel.modules:
        raise ErrnoError(errno.EEXIST)
    mod = Module(kernel, name)
    mod.params = dict(params or {})
    kernel.modules[name] = mod
    try:
        codes = [exec_driver_file(kernel, mod, path) for path in paths]
        if configure is not None:
            configure(codes)
        units = [_unit(code) for code in codes]
        if init is not None:
            units.append(_code_unit(mod, init))
        mod.refcnt = 1  # module_unload_init(): "Hold reference count during initialization."
        mod.mod_sysfs_setup()
        await run_inits(kernel, units)
    except BaseException:
        mod.state = MODULE_STATE_GOING
        mod.refcnt = 0
        await mod.free_module()
        raise
    mod.state = MODULE_STATE_LIVE
    mod.uevent(KOBJ_ADD)  # "Delay uevent until module has finished its init routine"
    mod.announced = True
    mod.put()  # "Drop initial reference."
    mod.layout.free_init()
    return mod


def _code_unit(mod: Module, init: ModuleInit) -> InitUnit:
    """An init given as code, and the exit that unregisters what it registered."""
    from .driver import driver_unregister  # noqa: PLC0415 (drivers belong to modules)

    async def module_code_exit() -> None:
        for drv in reversed(list(mod.drivers)):
            await driver_unregister(drv)

    async def module_code_init() -> None:
        try:
            await init(mod)
        except BaseException:  # the init's own error path: what it registered goes
            await module_code_exit()
            raise

    mod.inits.append(module_code_init)
    mod.exits.append(module_code_exit)
    return InitUnit([module_code_init], [module_code_exit])


async def load_builtin(
    kernel: Kernel,
    files: list[tuple[Path, dict[str, object]]],
    configure: Configure | None = None,
) -> None:
    """Built-in driver files, each with its parameters (``<module>.<param>=`` on the kernel
    command line): executed and initialised at boot, never unloaded."""
    codes = [exec_driver_file(kernel, None, path, params) for path, params in files]
    if configure is not None:
        configure(codes)
    await run_inits(kernel, [_unit(code) for code in codes])


async def delete_module(kernel: Kernel, name: str) -> None:
    """delete_module(2) without O_TRUNC: refuse a module in use, else run its exit (which
    unregisters its drivers, unbinding their devices) and free it."""
    mod = kernel.modules.get(name)
    if mod is None:
        raise ErrnoError(errno.ENOENT)
    mod.check_unload()
    mod.state = MODULE_STATE_GOING
    with as_syscall(SYSCALL_DELETE_MODULE):
        for fn in reversed(mod.exits):
            await call(kernel, fn)
    await mod.free_module()
    kernel.last_unloaded_module = name  # what print_modules() names after the list


def _show(fn: Callable[[Module], object]) -> Callable[[Module], str]:
    return lambda mod: f"{fn(mod)}\n"


async def _uevent_store(mod: Module, buf: bytes) -> int:
    kobject_synth_uevent(mod.kernel, mod.devpath, "module", [], buf)
    return len(buf)


# modinfo_attrs (kernel/module/main.c), those a module of fakesys has, in the kernel's order.
MODINFO_ATTRS = (
    SysfsAttr[Module]("uevent", WO, store=_uevent_store),
    SysfsAttr[Module]("srcversion", RO, _show(lambda mod: mod.layout.srcversion)),
    SysfsAttr[Module]("initstate", RO, _show(lambda mod: mod.state)),
    # show_coresize(): text plus the core data types (x86 keeps data out of vmalloc).
    SysfsAttr[Module]("coresize", RO, _show(lambda mod: mod.layout.size(CORE_TYPES))),
    SysfsAttr[Module]("initsize", RO, _show(lambda mod: mod.layout.size(INIT_TYPES))),
    # module_flags_taint(): no flag of an in-tree, signed module; the newline only.
    SysfsAttr[Module]("taint", RO, lambda mod: "\n"),
    SysfsAttr[Module]("refcnt", RO, _show(lambda mod: mod.refcnt)),
)


async def _section_read(section: ModuleSection, offset: int, count: int) -> bytes:
    """module_sect_read(): one read from offset 0 only; the address for a reader with
    CAP_SYSLOG (kallsyms_show_value() with kptr_restrict at 1), zeros for anyone else."""
    if offset != 0:
        raise ErrnoError(errno.EINVAL)
    caller = current_caller.get()
    address = section.address if caller is None or caller.uid == 0 else 0
    return f"0x{address:016x}\n".encode()[:count]


async def _note_read(section: ModuleSection, offset: int, count: int) -> bytes:
    """sysfs_bin_attr_simple_read(): the note's bytes."""
    assert section.note is not None
    return section.note[offset : offset + count]


SECTION_ATTR = SysfsBinAttr[ModuleSection]("", 0o400, _section_read, size=MODULE_SECT_READ_SIZE)
NOTE_ATTR = SysfsBinAttr[ModuleSection]("", 0o444, _note_read, size=lambda s: s.size)
