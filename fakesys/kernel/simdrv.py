"""Simulated drivers: what a scenario's ``[[driver]]`` entry becomes.

A simulated driver is a bus's driver class combined with a :class:`SimBehaviour`, which does
its probe and remove. The plain behaviour is a correct driver that keeps no files open:
probe allocates its private data with devm_kzalloc(), remove does nothing, and the devres
release after remove frees the data. The character-device behaviours, one per lifetime policy,
are in :mod:`.simchar`. ``probe_errno`` makes every probe fail with that errno.

The driver structure itself is a heap object too, freed when its module is unloaded, so code
that reaches a driver without holding its module (the 2002 driverfs race) is caught.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError
from .deferred_probe import EPROBE_DEFER
from .devres import devm_kzalloc
from .driver import Driver
from .pci import PciDeviceId, PciDriver
from .platform import PlatformDriver
from .stacktrace import frame, stack

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel
    from .module import Module
    from .simdump import DumpSupport

PRIV_SIZE = 256
DRIVER_SIZE = 192  # sizeof(struct platform_driver), near enough


class SimBehaviour:
    """The probe and remove of a simulated driver, shared by every bus."""

    def __init__(self, module: Module | None) -> None:
        self.module = module

    @property
    def module_name(self) -> str | None:
        return self.module.name if self.module else None

    async def probe(self, drv: Driver, dev: Device) -> None:
        dev.driver_data = devm_kzalloc(dev, PRIV_SIZE, f"struct {drv.name}_priv")

    async def remove(self, drv: Driver, dev: Device) -> None:
        pass

    def module_exit(self) -> None:
        """What the module's exit gives back besides the driver (a char major, ...)."""


class SimDriver(Driver):
    """A driver whose probe and remove are its :class:`SimBehaviour`; combined with a bus's
    driver class below."""

    behaviour: SimBehaviour
    probe_errno: int | None
    dump: DumpSupport | None

    def _init_sim(
        self, behaviour: SimBehaviour, probe_errno: int | None, dump: DumpSupport | None
    ) -> None:
        self.behaviour = behaviour
        self.probe_errno = probe_errno
        self.dump = dump
        with frame("do_init_module", f"{self.name}_init", module=behaviour.module_name):
            self.obj = self.kernel.slab.kmalloc(
                DRIVER_SIZE, f"struct {self.name}_driver", stack("__driver_register")
            )

    async def probe(self, dev: Device) -> None:
        with frame(f"{self.name}_probe", module=self.behaviour.module_name):
            if self.probe_errno is not None:
                raise ErrnoError(self.probe_errno)
            await self.behaviour.probe(self, dev)
            if self.dump is not None:
                self.dump.probe(self, dev)

    async def remove(self, dev: Device) -> None:
        with frame(f"{self.name}_remove", module=self.behaviour.module_name):
            await self.behaviour.remove(self, dev)

    @property
    def has_coredump(self) -> bool:
        return self.dump is not None

    async def coredump(self, dev: Device) -> None:
        if self.dump is not None:
            await self.dump.coredump(self, dev)

    def free(self) -> None:
        """The module's memory goes away with it (free_module())."""
        self.behaviour.module_exit()
        with frame("free_module"):
            self.kernel.slab.kfree(self.obj, stack("kfree"))


class SimPlatformDriver(SimDriver, PlatformDriver):
    def __init__(
        self,
        kernel: Kernel,
        name: str,
        behaviour: SimBehaviour,
        id_table: Sequence[str] = (),
        probe_errno: int | None = None,
        dump: DumpSupport | None = None,
    ) -> None:
        PlatformDriver.__init__(self, kernel, name, behaviour.module, id_table)
        self._init_sim(behaviour, probe_errno, dump)


class SimPciDriver(SimDriver, PciDriver):
    def __init__(
        self,
        kernel: Kernel,
        name: str,
        behaviour: SimBehaviour,
        id_table: Sequence[PciDeviceId] = (),
        probe_errno: int | None = None,
        dump: DumpSupport | None = None,
    ) -> None:
        PciDriver.__init__(self, kernel, name, behaviour.module, id_table)
        self._init_sim(behaviour, probe_errno, dump)


class SimHotplugDriver(SimDriver):
    """A driver of the hotplug bus, which matches every device on it."""

    def __init__(
        self,
        kernel: Kernel,
        name: str,
        behaviour: SimBehaviour,
        probe_errno: int | None = None,
        dump: DumpSupport | None = None,
    ) -> None:
        Driver.__init__(self, kernel.buses["hotplug"], name, behaviour.module)
        self._init_sim(behaviour, probe_errno, dump)


def errno_by_name(name: str) -> int:
    """``"ENOMEM"`` → 12, and the kernel's own ``"EPROBE_DEFER"``; raises ValueError for an
    unknown name."""
    if name == "EPROBE_DEFER":
        return EPROBE_DEFER
    value = getattr(errno_mod, name, None)
    if not name.startswith("E") or not isinstance(value, int):
        raise ValueError(f"unknown errno name {name!r}")
    return value
