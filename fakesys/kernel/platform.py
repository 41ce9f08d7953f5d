"""The platform bus (drivers/base/platform.c).

A platform device is named ``<name>.<id>``, or just ``<name>`` when its id is -1, and lives in
``/sys/devices/platform/``. A platform driver matches a device whose *name* (without the id)
equals the driver's name or one of its id table entries; ``driver_override`` wins over both.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import PAGE_SIZE, ErrnoError
from .bus import BusType
from .core import Device
from .driver import Driver
from .lib import buf_to_str
from .stacktrace import frames
from .sysfs import RO, RW, SysfsAttr

if TYPE_CHECKING:
    from .kernel import Kernel


def driver_override_show(dev: Device) -> str:
    # sysfs_emit("%s\n", dev->driver_override): "(null)" when unset
    return f"{dev.driver_override if dev.driver_override is not None else '(null)'}\n"


async def driver_override_store(dev: Device, buf: bytes) -> int:
    """driver_set_override() (drivers/base/driver.c): cut at the first newline; an empty value
    clears the override."""
    if len(buf) >= PAGE_SIZE - 1:
        raise ErrnoError(errno.EINVAL)
    text = buf_to_str(buf).split("\n", 1)[0]
    dev.driver_override = text or None
    return len(buf)


DEV_ATTR_DRIVER_OVERRIDE = SysfsAttr[Device](
    "driver_override", RW, driver_override_show, driver_override_store
)


class PlatformDevice(Device):
    def __init__(self, kernel: Kernel, name: str, id: int = -1) -> None:
        super().__init__(
            kernel,
            name if id == -1 else f"{name}.{id}",
            bus=kernel.buses["platform"],
            parent=kernel.platform_bus_device,
        )
        self.pdev_name = name
        self.id = id


class PlatformDriver(Driver, name="platform_driver", var="pdrv"):
    """``struct platform_driver``: its id table is a list of device names."""

    BUS = "platform"


def _modalias_show(dev: Device) -> str:
    assert isinstance(dev, PlatformDevice)
    return f"platform:{dev.pdev_name}\n"


class PlatformBus(BusType):
    probe_frames = frames("platform_probe")
    remove_frames = frames("platform_remove")
    dev_attrs = (
        SysfsAttr[Device]("modalias", RO, _modalias_show),
        DEV_ATTR_DRIVER_OVERRIDE,
    )

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel, "platform")

    def match(self, dev: Device, drv: Driver) -> bool:
        """platform_match(): the id table, else the driver's name."""
        assert isinstance(dev, PlatformDevice)
        if drv.id_table:
            return dev.pdev_name in drv.id_table
        return dev.pdev_name == drv.name

    def uevent(self, dev: Device) -> list[tuple[str, str]]:
        assert isinstance(dev, PlatformDevice)
        return [("MODALIAS", f"platform:{dev.pdev_name}")]
