"""``/proc/modules`` (kernel/module/procfs.c), what ``lsmod`` lists.

One line per loaded module, the newest first (load_module() adds it at the head of the list)::

    name size refcount holders state address

``holders`` is each module that uses this one followed by a comma, or ``-``; the state is
``Live``, ``Loading`` or ``Unloading``. The address is the start of the module's text for an
opener allowed to see kernel pointers (kallsyms_show_value(): CAP_SYSLOG, that is root, with the
default kptr_restrict), else ``0x0000000000000000``.

The size is module_total_size(), the sum of the module's page-aligned regions (what
``coresize`` shows once the init regions are freed), the address that of its text region:
both from the module's layout (:class:`.module.ModuleLayout`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernfs import FileOps, OpenFile
from .module import CORE_TYPES, INIT_TYPES, MOD_TEXT, MODULE_STATE_COMING, MODULE_STATE_GOING

if TYPE_CHECKING:
    from .kernel import Kernel
    from .module import Module


def module_total_size(mod: Module) -> int:
    """Every memory region of the module (its init regions are 0 once it is live)."""
    return mod.layout.size((*CORE_TYPES, *INIT_TYPES))


def module_text_base(mod: Module) -> int:
    return mod.layout.mem_base[MOD_TEXT]


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
        f"{mod.name} {module_total_size(mod)} {mod.refcnt} {holders} {_state(mod)} "
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
