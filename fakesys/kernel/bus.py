"""Buses (drivers/base/bus.c): ``/sys/bus/<bus>/`` with its devices and drivers, and the
sysfs files that bind and unbind by name.

The stores keep the kernel's errnos: ``bind`` answers ENODEV for a name that is not on the bus
or that the driver does not match, EBUSY for a device that already has a driver, and the
probe's own errno when probe fails; ``unbind`` answers ENODEV unless the device is bound to
this very driver. Names are compared with sysfs_streq(), so ``echo`` and ``echo -n`` both work.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError, KernfsNode
from .dd import (
    device_attach,
    device_driver_attach,
    device_driver_detach,
    device_release_driver,
    driver_attach,
    driver_detach,
    driver_match_device,
)
from .kobject_uevent import KOBJ_ADD, KOBJ_REMOVE, kobject_synth_uevent, kobject_uevent
from .lib import buf_to_str, sysfs_streq
from .stacktrace import Frames, frame
from .sysfs import RW, WO, SysfsAttr, create_file

if TYPE_CHECKING:
    from .core import Device
    from .driver import Driver
    from .kernel import Kernel


class BusType:
    """``struct bus_type``. Subclasses define matching, uevent variables and attributes."""

    #: Attributes every device on this bus gets (bus->dev_groups).
    dev_attrs: Sequence[SysfsAttr[Device]] = ()
    #: Attributes every driver on this bus gets (bus->drv_groups).
    drv_attrs: Sequence[SysfsAttr[Driver]] = ()
    #: Attributes of the bus itself (bus->bus_groups).
    bus_attrs: Sequence[SysfsAttr[BusType]] = ()
    #: The bus's own probe and remove (bus->probe, bus->remove), which call the driver's:
    #: the frames between really_probe() and a driver's probe in a stack.
    probe_frames: Frames = ()
    remove_frames: Frames = ()

    def __init__(self, kernel: Kernel, name: str) -> None:
        self.kernel = kernel
        self.name = name
        self.devices: list[Device] = []
        self.drivers: dict[str, Driver] = {}
        self.drivers_autoprobe = True
        self.kn: KernfsNode | None = None
        self.devices_kn: KernfsNode | None = None
        self.drivers_kn: KernfsNode | None = None

    def __repr__(self) -> str:
        return f"<BusType {self.name}>"

    # -- to override --

    def match(self, dev: Device, drv: Driver) -> bool:
        """bus->match(); the default matches by name."""
        return dev.name == drv.name

    def uevent(self, dev: Device) -> list[tuple[str, str]]:
        """bus->uevent(): variables this bus adds to a device's events."""
        return []

    # -- registration --

    def register(self) -> None:
        """bus_register(): ``/sys/bus/<name>/`` and its files."""
        root = self.kernel.kernfs
        self.kn = root.create_dir(self.kernel.bus_kn, self.name)
        self.devices_kn = root.create_dir(self.kn, "devices")
        self.drivers_kn = root.create_dir(self.kn, "drivers")
        for attr in (*BUS_ATTRS, *self.bus_attrs):
            create_file(root, self.kn, self, attr)
        self.kernel.buses[self.name] = self

    def find_device_by_name(self, name: str) -> Device | None:
        """bus_find_device_by_name(): sysfs_streq() on the device names."""
        return next((dev for dev in self.devices if sysfs_streq(dev.name, name)), None)

    def add_device(self, dev: Device) -> None:
        """bus_add_device(): the ``subsystem`` link and ``/sys/bus/<bus>/devices/<dev>``."""
        root = self.kernel.kernfs
        assert dev.kn is not None and self.kn is not None and self.devices_kn is not None
        root.create_link(self.devices_kn, dev.name, dev.kn)
        root.create_link(dev.kn, "subsystem", self.kn)
        self.devices.append(dev)

    async def probe_device(self, dev: Device) -> None:
        """bus_probe_device(): try the drivers if autoprobe is on. It returns nothing: a
        device that no driver takes, or whose probe is deferred, is still added."""
        if self.drivers_autoprobe:
            with contextlib.suppress(ErrnoError):
                await device_attach(dev)

    async def remove_device_links(self, dev: Device) -> None:
        """The bus's attributes and links of ``dev``."""
        root = self.kernel.kernfs
        assert dev.kn is not None and self.devices_kn is not None
        for kn in (
            *(dev.kn.lookup(attr.name) for attr in self.dev_attrs),
            self.devices_kn.lookup(dev.name),
            dev.kn.lookup("subsystem"),
        ):
            if kn is not None:
                await root.remove(kn)

    async def remove_device(self, dev: Device) -> None:
        """bus_remove_device(): the bus's attributes and the links go first, then the driver
        is released."""
        await self.remove_device_links(dev)
        await device_release_driver(dev)
        self.devices.remove(dev)


# -- /sys/bus/<bus>/ files --


def _drivers_autoprobe_show(bus: BusType) -> str:
    return f"{int(bus.drivers_autoprobe)}\n"


async def _drivers_autoprobe_store(bus: BusType, buf: bytes) -> int:
    bus.drivers_autoprobe = buf[:1] != b"0"
    return len(buf)


async def _drivers_probe_store(bus: BusType, buf: bytes) -> int:
    dev = bus.find_device_by_name(buf_to_str(buf))
    if dev is None:
        raise ErrnoError(errno.ENODEV)
    # bus_rescan_devices_helper(): "no driver" and "already bound" both succeed.
    if dev.driver is None:
        try:
            await device_attach(dev)
        except ErrnoError:
            raise ErrnoError(errno.EINVAL) from None
    return len(buf)


async def _bus_uevent_store(bus: BusType, buf: bytes) -> int:
    assert bus.kn is not None
    kobject_synth_uevent(bus.kernel, bus.kn.path().removeprefix("/sys"), "bus", [], buf)
    return len(buf)


BUS_ATTRS = (
    SysfsAttr[BusType]("drivers_autoprobe", RW, _drivers_autoprobe_show, _drivers_autoprobe_store),
    SysfsAttr[BusType]("drivers_probe", WO, store=_drivers_probe_store),
    SysfsAttr[BusType]("uevent", WO, store=_bus_uevent_store),
)


# -- /sys/bus/<bus>/drivers/<drv>/ files --


async def bind_store(drv: Driver, buf: bytes) -> int:
    dev = drv.bus.find_device_by_name(buf_to_str(buf))
    if dev is None or not driver_match_device(drv, dev):
        raise ErrnoError(errno.ENODEV)
    with frame("device_driver_attach"):
        await device_driver_attach(drv, dev)
    return len(buf)


async def unbind_store(drv: Driver, buf: bytes) -> int:
    dev = drv.bus.find_device_by_name(buf_to_str(buf))
    if dev is None or dev.driver is not drv:
        raise ErrnoError(errno.ENODEV)
    with frame("device_driver_detach"):
        await device_driver_detach(dev)
    return len(buf)


async def _drv_uevent_store(drv: Driver, buf: bytes) -> int:
    assert drv.kn is not None
    kobject_synth_uevent(drv.kernel, drv.kn.path().removeprefix("/sys"), "drivers", [], buf)
    return len(buf)


DRIVER_ATTR_BIND = SysfsAttr["Driver"]("bind", WO, store=bind_store)
DRIVER_ATTR_UNBIND = SysfsAttr["Driver"]("unbind", WO, store=unbind_store)
DRIVER_ATTR_UEVENT = SysfsAttr["Driver"]("uevent", WO, store=_drv_uevent_store)


async def bus_add_driver(drv: Driver) -> None:
    """bus_add_driver(): the driver's directory, its files and links, then attach."""
    bus = drv.bus
    kernel = bus.kernel
    root = kernel.kernfs
    assert bus.drivers_kn is not None
    if drv.name in bus.drivers:
        kernel.log.emit(3, f"Error: Driver '{drv.name}' is already registered, aborting...")
        raise ErrnoError(errno.EBUSY)
    drv.kn = root.create_dir(bus.drivers_kn, drv.name)
    bus.drivers[drv.name] = drv
    if bus.drivers_autoprobe:
        await driver_attach(drv)
    if drv.owner is not None:
        drv.owner.add_driver(drv)
    create_file(root, drv.kn, drv, DRIVER_ATTR_UEVENT)
    for attr in bus.drv_attrs:
        create_file(root, drv.kn, drv, attr)
    if not drv.suppress_bind_attrs:
        create_file(root, drv.kn, drv, DRIVER_ATTR_BIND)
        create_file(root, drv.kn, drv, DRIVER_ATTR_UNBIND)
    kobject_uevent(kernel, KOBJ_ADD, drv.kn.path().removeprefix("/sys"), "drivers", [])


async def bus_remove_driver(drv: Driver) -> None:
    """bus_remove_driver(), in the kernel's order: ``bind``/``unbind`` go first (waiting for
    writes in flight), then the driver leaves the bus, then it is detached from its devices.

    Detaching first would let a ``bind`` in flight probe the device after the detach, against
    a directory being removed.
    """
    bus = drv.bus
    kernel = bus.kernel
    root = kernel.kernfs
    assert drv.kn is not None
    devpath = drv.kn.path().removeprefix("/sys")
    for attr in (DRIVER_ATTR_BIND, DRIVER_ATTR_UNBIND, *bus.drv_attrs, DRIVER_ATTR_UEVENT):
        kn = drv.kn.lookup(attr.name)
        if kn is not None:
            await root.remove(kn)
    del bus.drivers[drv.name]
    await driver_detach(drv)
    if drv.owner is not None:
        await drv.owner.remove_driver(drv)
    kobject_uevent(kernel, KOBJ_REMOVE, devpath, "drivers", [])
    await root.remove(drv.kn)
