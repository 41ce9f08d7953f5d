"""Simulated drivers: what a scenario's ``[[driver]]`` entry becomes.

A simulated driver behaves as a plain, correct driver of its bus: probe allocates its private
data with devm_kzalloc() and stores it as driver data; remove does nothing, and the core's
devres release frees the data after it. ``probe_errno`` makes every probe fail with that errno,
to reproduce a failing bind.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError
from .devres import devm_kzalloc
from .driver import Driver
from .pci import PciDeviceId, PciDriver
from .platform import PlatformDriver
from .stacktrace import frame

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel
    from .module import Module

PRIV_SIZE = 256


class SimBehaviour:
    """The probe and remove of a simulated driver, shared by every bus."""

    def __init__(self, module_name: str | None, probe_errno: int | None) -> None:
        self.module_name = module_name
        self.probe_errno = probe_errno

    async def probe(self, drv: Driver, dev: Device) -> None:
        with frame(f"{drv.name}_probe", module=self.module_name):
            if self.probe_errno is not None:
                raise ErrnoError(self.probe_errno)
            dev.driver_data = devm_kzalloc(dev, PRIV_SIZE, f"struct {drv.name}_priv")

    async def remove(self, drv: Driver, dev: Device) -> None:
        with frame(f"{drv.name}_remove", module=self.module_name):
            pass


class SimDriver(Driver):
    """A driver whose probe and remove are a :class:`SimBehaviour`; combined with a bus's
    driver class below."""

    behaviour: SimBehaviour

    async def probe(self, dev: Device) -> None:
        await self.behaviour.probe(self, dev)

    async def remove(self, dev: Device) -> None:
        await self.behaviour.remove(self, dev)


class SimPlatformDriver(SimDriver, PlatformDriver):
    def __init__(
        self,
        kernel: Kernel,
        name: str,
        owner: Module | None,
        id_table: Sequence[str],
        probe_errno: int | None = None,
    ) -> None:
        PlatformDriver.__init__(self, kernel, name, owner, id_table)
        self.behaviour = SimBehaviour(owner.name if owner else None, probe_errno)


class SimPciDriver(SimDriver, PciDriver):
    def __init__(
        self,
        kernel: Kernel,
        name: str,
        owner: Module | None,
        id_table: Sequence[PciDeviceId],
        probe_errno: int | None = None,
    ) -> None:
        PciDriver.__init__(self, kernel, name, owner, id_table)
        self.behaviour = SimBehaviour(owner.name if owner else None, probe_errno)


def errno_by_name(name: str) -> int:
    """``"ENOMEM"`` → 12; raises ValueError for an unknown name."""
    value = getattr(errno_mod, name, None)
    if not name.startswith("E") or not isinstance(value, int):
        raise ValueError(f"unknown errno name {name!r}")
    return value
