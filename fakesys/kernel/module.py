"""Loadable modules (kernel/module/main.c, kernel/module/sysfs.c, drivers/base/module.c):
reference counts, state and ``/sys/module/<name>/``.

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
No module has parameters (``parameters/``) or a ``MODULE_VERSION`` (``version``), and none
taints the kernel: they count as in-tree and signed.
"""

from __future__ import annotations

import errno
import hashlib
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..kernfs import PAGE_SIZE, ErrnoError, KernfsNode, current_caller
from .driver import driver_unregister
from .kobject_uevent import KOBJ_ADD, KOBJ_REMOVE, kobject_synth_uevent, kobject_uevent
from .stacktrace import frame
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

    def __repr__(self) -> str:
        return f"<Module {self.name}>"

    def mod_sysfs_setup(self) -> None:
        """``/sys/module/<name>/``: holders/, the modinfo attributes, the holders links of the
        modules this one uses, then sections/ and notes/."""
        root = self.kernel.kernfs
        self.kn = root.create_dir(self.kernel.module_kn, self.name)
        self.holders_kn = root.create_dir(self.kn, "holders")
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
        if self.refcnt > 0:
            raise ErrnoError(errno.EWOULDBLOCK)

    async def unregister_drivers(self) -> None:
        for drv in reversed(list(self.drivers)):
            await driver_unregister(drv)
            drv.free()

    async def free_module(self) -> None:
        """free_module(): sysfs goes, the module leaves the list and its uses are dropped."""
        await self.mod_sysfs_teardown()
        for used in self.uses:
            used.holders.remove(self)
        del self.kernel.modules[self.name]


ModuleInit = Callable[[Module], Awaitable[None]]


async def load_module(kernel: Kernel, name: str, init: ModuleInit) -> Module:
    """init_module(2): the module is formed and in ``/sys/module`` while ``coming``, with the
    reference held during initialization; then do_init_module() runs ``init``.

    If ``init`` raises, the module goes as the kernel's failure path takes it: ``going``, the
    drivers it registered unregistered (what its init's own error path does), sysfs torn down
    with no uevent, since ``add`` was never sent; the error is raised again.
    """
    if name in kernel.modules:
        raise ErrnoError(errno.EEXIST)
    mod = Module(kernel, name)
    kernel.modules[name] = mod
    mod.refcnt = 1  # module_unload_init(): "Hold reference count during initialization."
    mod.mod_sysfs_setup()
    await do_init_module(mod, init)
    return mod


async def do_init_module(mod: Module, init: ModuleInit) -> None:
    try:
        with frame("do_init_module", "do_one_initcall"), frame(f"{mod.name}_init", module=mod.name):
            await init(mod)
    except Exception:
        mod.state = MODULE_STATE_GOING
        mod.put()
        await mod.unregister_drivers()
        await mod.free_module()
        raise
    mod.state = MODULE_STATE_LIVE
    mod.uevent(KOBJ_ADD)
    mod.announced = True
    mod.put()  # "Drop initial reference."
    mod.layout.free_init()


async def delete_module(kernel: Kernel, name: str) -> None:
    """delete_module(2) without O_TRUNC: refuse a module in use, else run its exit (which
    unregisters its drivers, unbinding their devices) and free it."""
    mod = kernel.modules.get(name)
    if mod is None:
        raise ErrnoError(errno.ENOENT)
    mod.check_unload()
    mod.state = MODULE_STATE_GOING
    with frame("__do_sys_delete_module"), frame(f"{name}_exit", module=name):
        await mod.unregister_drivers()
    await mod.free_module()


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
