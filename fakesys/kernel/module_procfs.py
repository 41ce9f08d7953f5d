"""``/proc/modules`` (kernel/module/procfs.c), what ``lsmod`` lists.

One line per loaded module, the newest first (load_module() adds it at the head of the list)::

    name size refcount holders state address

``holders`` is each module that uses this one followed by a comma, or ``-``; the state is
``Live``, ``Loading`` or ``Unloading``. The address is the start of the module's text for an
opener allowed to see kernel pointers (kallsyms_show_value(): CAP_SYSLOG, that is root, with the
default kptr_restrict), else ``0x0000000000000000``.

The simulation has no code, so the size and the address are derived from the name, as
:mod:`.kallsyms` derives symbol sizes: stable from run to run and shaped like real ones (page
multiples in the module area).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from ..kernfs import FileOps, OpenFile
from .module import MODULE_STATE_COMING, MODULE_STATE_GOING

if TYPE_CHECKING:
    from .kernel import Kernel
    from .module import Module

MODULES_VADDR = 0xFFFFFFFFC0000000
PAGE_SIZE = 4096


def module_core_size(mod: Module) -> int:
    """The bytes of the module's core sections, what ``lsmod`` calls its size."""
    return (4 + zlib.crc32(mod.name.encode()) % 60) * PAGE_SIZE


def module_text_base(mod: Module) -> int:
    return MODULES_VADDR + (zlib.crc32(mod.name.encode()[::-1]) % 0x8000) * PAGE_SIZE


def _state(mod: Module) -> str:
    if mod.state == MODULE_STATE_GOING:
        return "Unloading"
    if mod.state == MODULE_STATE_COMING:
        return "Loading"
    return "Live"


def m_show(mod: Module, show_address: bool) -> str:
    holders = "".join(f"{holder.name}," for holder in mod.holders) or "-"
    address = module_text_base(mod) if show_address else 0
    return (
        f"{mod.name} {module_core_size(mod)} {mod.refcnt} {holders} {_state(mod)} "
        f"0x{address:016x}\n"
    )


class ProcModules(FileOps):
    """The file, a seq_file: a read at offset 0 lists the modules as they are then, later
    reads continue that text. Whether addresses show is decided at open (modules_open())."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def open(self, of: OpenFile) -> None:
        of.private = of.caller.uid == 0

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        if offset == 0 or of.buffer is None:
            modules = reversed(self.kernel.modules.values())
            of.buffer = "".join(m_show(mod, of.private is True) for mod in modules).encode()
        return of.buffer[offset : offset + size]
