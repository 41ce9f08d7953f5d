"""Loadable modules (kernel/module/main.c): reference counts, state and ``/sys/module``.

Every module of a scenario is loaded at boot and ``live``. try_module_get() fails once the
module is going; delete_module() refuses with EWOULDBLOCK while the count is above zero or
another module uses this one, as ``rmmod`` sees it. A module's ``add`` uevent goes out once its
init has run (do_init_module()), its ``remove`` when it is freed.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError, KernfsNode
from .driver import driver_unregister
from .kobject_uevent import KOBJ_REMOVE, kobject_synth_uevent, kobject_uevent
from .stacktrace import frame
from .sysfs import RO, WO, SysfsAttr, create_file

if TYPE_CHECKING:
    from .driver import Driver
    from .kernel import Kernel

MODULE_STATE_LIVE = "live"
MODULE_STATE_COMING = "coming"
MODULE_STATE_GOING = "going"


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
        self.kn: KernfsNode | None = None

    def __repr__(self) -> str:
        return f"<Module {self.name}>"

    def load(self) -> None:
        """What load_module() leaves behind: ``/sys/module/<name>/``, state live."""
        root = self.kernel.kernfs
        self.kn = root.create_dir(self.kernel.module_kn, self.name)
        for attr in MODULE_ATTRS:
            create_file(root, self.kn, self, attr)
        root.create_dir(self.kn, "holders")
        root.create_dir(self.kn, "drivers")
        self.state = MODULE_STATE_LIVE
        self.kernel.modules[self.name] = self

    @property
    def devpath(self) -> str:
        return f"/module/{self.name}"

    def uevent(self, action: str) -> None:
        """kobject_uevent() of the module's kobject: no variables of its own."""
        kobject_uevent(self.kernel, action, self.devpath, "module", [])

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

    def check_unload(self) -> None:
        """The refusals of delete_module(), in the kernel's order."""
        if self.holders:
            raise ErrnoError(errno.EWOULDBLOCK)
        if self.state != MODULE_STATE_LIVE:
            raise ErrnoError(errno.EBUSY)
        if self.refcnt > 0:
            raise ErrnoError(errno.EWOULDBLOCK)


async def delete_module(kernel: Kernel, name: str) -> None:
    """delete_module(2) without O_TRUNC: refuse a module in use, else run its exit (which
    unregisters its drivers, unbinding their devices) and free it."""
    mod = kernel.modules.get(name)
    if mod is None:
        raise ErrnoError(errno.ENOENT)
    mod.check_unload()
    mod.state = MODULE_STATE_GOING
    with frame("__do_sys_delete_module", f"{name}_exit"):
        for drv in reversed(list(mod.drivers)):
            await driver_unregister(drv)
            drv.free()
    assert mod.kn is not None
    # free_module(): the last put of the kobject sends the automatic remove event
    # (kobject_cleanup()), then its directory goes.
    mod.uevent(KOBJ_REMOVE)
    await kernel.kernfs.remove(mod.kn)
    for used in mod.uses:
        used.holders.remove(mod)
    del kernel.modules[name]


def _refcnt_show(mod: Module) -> str:
    return f"{mod.refcnt}\n"


def _initstate_show(mod: Module) -> str:
    return f"{mod.state}\n"


def _taint_show(mod: Module) -> str:
    return "\n"


async def _uevent_store(mod: Module, buf: bytes) -> int:
    kobject_synth_uevent(mod.kernel, mod.devpath, "module", [], buf)
    return len(buf)


MODULE_ATTRS = (
    SysfsAttr[Module]("refcnt", RO, _refcnt_show),
    SysfsAttr[Module]("initstate", RO, _initstate_show),
    SysfsAttr[Module]("taint", RO, _taint_show),
    SysfsAttr[Module]("uevent", WO, store=_uevent_store),
)
