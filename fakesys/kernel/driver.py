"""Drivers (drivers/base/driver.c): registration on a bus and the callbacks the core calls.

A :class:`Driver` subclass implements ``probe`` and ``remove``; the simulated drivers whose
behaviour a scenario chooses live in :mod:`.simdrv`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..kernfs import KernfsNode
from .bus import bus_add_driver, bus_remove_driver

if TYPE_CHECKING:
    from .bus import BusType
    from .core import Device
    from .module import Module


class Driver:
    """``struct device_driver``."""

    suppress_bind_attrs = False

    def __init__(self, bus: BusType, name: str, owner: Module | None = None) -> None:
        self.bus = bus
        self.kernel = bus.kernel
        self.name = name
        self.owner = owner
        self.devices: list[Device] = []
        self.kn: KernfsNode | None = None

    def __repr__(self) -> str:
        return f"<Driver {self.bus.name}:{self.name}>"

    async def probe(self, dev: Device) -> None:
        """Bind to ``dev``; raise :class:`~fakesys.kernfs.ErrnoError` to refuse."""

    async def remove(self, dev: Device) -> None:
        """Unbind from ``dev``; cannot fail."""

    def free(self) -> None:
        """The driver's memory goes away with its module."""

    @property
    def has_coredump(self) -> bool:
        """Whether the driver has a ``.coredump()`` callback (and its devices a ``coredump``
        attribute while bound)."""
        return False

    async def coredump(self, dev: Device) -> None:
        """Dump the device's state (``echo 1 > /sys/devices/.../coredump``)."""


async def driver_register(drv: Driver) -> None:
    await bus_add_driver(drv)


async def driver_unregister(drv: Driver) -> None:
    # The driver list is changed under the driver lock, which lookups that must not race with
    # unregistration take too (the 2002 driverfs discussion of get_driver()).
    async with drv.kernel.driver_lock:
        await bus_remove_driver(drv)
