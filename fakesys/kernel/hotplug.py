"""A bus whose devices come and go at run time, with netdevsim's control files
(drivers/net/netdevsim/bus.c).

``/sys/bus/hotplug/new_device`` takes ``"ID [PORT_COUNT [NUM_QUEUES]]"`` (the last two are
parsed as netdevsim parses them, and kept as attributes) and adds device ``hotplug<ID>`` at
``/sys/devices/hotplug<ID>``, probed at once; ``del_device`` takes ``"ID"`` and unregisters it
synchronously, unbinding its driver first, like pulling a USB stick. Errnos are netdevsim's:
EINVAL for nothing parsed or an id over INT_MAX, ENOSPC for an id in use, ENOENT for an
unknown one.
"""

from __future__ import annotations

import errno
import re
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError
from .bus import BusType
from .control import add_hardware_controls, remove_hardware_controls
from .core import Device, device_add, device_unregister
from .driver import Driver
from .lib import buf_to_str
from .printk import KERN_ERR
from .stacktrace import frames
from .sysfs import RO, WO, SysfsAttr

if TYPE_CHECKING:
    from .kernel import Kernel

INT_MAX = 2**31 - 1
NEW_DEVICE_USAGE = 'Format for adding new device is "id port_count num_queues" (uint uint unit).'


class HotplugDevice(Device):
    def __init__(self, kernel: Kernel, dev_id: int, port_count: int = 1, num_queues: int = 1):
        super().__init__(kernel, f"hotplug{dev_id}", bus=kernel.buses["hotplug"])
        self.dev_id = dev_id
        self.port_count = port_count
        self.num_queues = num_queues


def _parse_uints(text: str, count: int) -> list[int]:
    values: list[int] = []
    position = 0
    for _ in range(count):
        match = re.compile(r"\s*([+-]?\d+)").match(text, position)
        if match is None:
            break
        values.append(int(match.group(1)) % 2**32)
        position = match.end()
    return values


async def _new_device_store(bus: BusType, buf: bytes) -> int:
    values = _parse_uints(buf_to_str(buf), 3)
    if not values:
        bus.kernel.log.emit(KERN_ERR, f"hotplug: {NEW_DEVICE_USAGE}")
        raise ErrnoError(errno.EINVAL)
    dev_id, port_count, num_queues = (*values, 1, 1)[:3]
    if dev_id > INT_MAX:
        bus.kernel.log.emit(KERN_ERR, 'hotplug: Value of "id" is too big.')
        raise ErrnoError(errno.EINVAL)
    if bus.find_device_by_name(f"hotplug{dev_id}") is not None:
        raise ErrnoError(errno.ENOSPC)  # ida_alloc_range(id, id) fails
    dev = HotplugDevice(bus.kernel, dev_id, port_count, num_queues)
    add_hardware_controls(bus.kernel, dev.name, dev.hw)
    await device_add(dev)
    return len(buf)


async def _del_device_store(bus: BusType, buf: bytes) -> int:
    values = _parse_uints(buf_to_str(buf), 1)
    if not values or values[0] > INT_MAX:
        bus.kernel.log.emit(KERN_ERR, 'hotplug: Format for deleting device is "id" (uint).')
        raise ErrnoError(errno.EINVAL)
    dev = bus.find_device_by_name(f"hotplug{values[0]}")
    if dev is None:
        raise ErrnoError(errno.ENOENT)
    await device_unregister(dev)
    await remove_hardware_controls(bus.kernel, dev.name)
    return len(buf)


def _hotplug(dev: Device) -> HotplugDevice:
    assert isinstance(dev, HotplugDevice)
    return dev


class HotplugDriver(Driver, name="hotplug_driver"):
    """A driver of the hotplug bus, which matches every device on it."""

    BUS = "hotplug"


class HotplugBus(BusType):
    probe_frames = frames("hotplug_bus_probe")
    remove_frames = frames("hotplug_bus_remove")
    bus_attrs = (
        SysfsAttr[BusType]("new_device", WO, store=_new_device_store),
        SysfsAttr[BusType]("del_device", WO, store=_del_device_store),
    )
    dev_attrs = (
        SysfsAttr[Device]("port_count", RO, lambda dev: f"{_hotplug(dev).port_count}\n"),
        SysfsAttr[Device]("num_queues", RO, lambda dev: f"{_hotplug(dev).num_queues}\n"),
    )

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel, "hotplug")

    def match(self, dev: Device, drv: Driver) -> bool:
        """Every driver of this bus drives every device on it, as netdevsim's one driver."""
        return True

    def uevent(self, dev: Device) -> list[tuple[str, str]]:
        return [("MODALIAS", "hotplug:device")]
