"""Runtime PM state (drivers/base/power/runtime.c) and the ``power/`` group every device has
(drivers/base/power/sysfs.c dpm_sysfs_add()).

A device starts as the driver core leaves it: runtime PM disabled (``runtime_status`` reads
``unsupported``), ``control`` at ``auto``, no time accounted, ``autosuspend_delay_ms`` failing
with EIO. A bus can enable runtime PM at creation: the PCI core forbids it, sets the function
active and enables it (pci_pm_init()), so a PCI function shows ``on`` and ``active`` and its
``runtime_active_time`` grows with the engine clock.

The group is the one of a kernel without CONFIG_PM_ADVANCED_DEBUG, for a device that cannot wake
the system: ``control``, ``runtime_status``, ``runtime_suspended_time``, ``runtime_active_time``
and ``autosuspend_delay_ms``, with the kernel's modes.

Limitations: nothing ever suspends at run time. With ``control`` at ``auto`` an unbound PCI
function stays ``active`` where the kernel would suspend it to D3hot; no device has wakeup
attributes.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError
from .lib import buf_to_str, sysfs_streq
from .sysfs import RO, RW, SysfsAttr, create_group

if TYPE_CHECKING:
    from .core import Device

RPM_ACTIVE = "active"
RPM_SUSPENDED = "suspended"

NSEC_PER_MSEC = 1_000_000


class DevPmInfo:
    """The runtime part of ``struct dev_pm_info`` (``dev->power``)."""

    __slots__ = (
        "accounting_timestamp",
        "active_time",
        "disable_depth",
        "runtime_auto",
        "runtime_status",
        "suspended_time",
    )

    def __init__(self) -> None:
        # pm_runtime_init(): disabled once, suspended, allowed.
        self.disable_depth = 1
        self.runtime_status = RPM_SUSPENDED
        #: False once pm_runtime_forbid() ran: ``control`` reads ``on``.
        self.runtime_auto = True
        self.accounting_timestamp = 0
        self.active_time = 0
        self.suspended_time = 0


def update_pm_runtime_accounting(dev: Device) -> None:
    """Charge the time since the last update to the current status; nothing while disabled."""
    power = dev.power
    if power.disable_depth > 0:
        return
    now = dev.kernel.clock.now_ns()
    delta = now - power.accounting_timestamp
    power.accounting_timestamp = now
    if power.runtime_status == RPM_SUSPENDED:
        power.suspended_time += delta
    else:
        power.active_time += delta


def pm_runtime_set_active(dev: Device) -> None:
    update_pm_runtime_accounting(dev)
    dev.power.runtime_status = RPM_ACTIVE


def pm_runtime_enable(dev: Device) -> None:
    """One disable fewer; at zero the accounting starts from now."""
    power = dev.power
    if power.disable_depth > 0:
        power.disable_depth -= 1
        if power.disable_depth == 0:
            power.accounting_timestamp = dev.kernel.clock.now_ns()


def pm_runtime_forbid(dev: Device) -> None:
    dev.power.runtime_auto = False


def pm_runtime_allow(dev: Device) -> None:
    dev.power.runtime_auto = True


def _control_show(dev: Device) -> str:
    return "auto\n" if dev.power.runtime_auto else "on\n"


async def _control_store(dev: Device, buf: bytes) -> int:
    # control_store(): sysfs_streq against "auto" and "on", else -EINVAL
    text = buf_to_str(buf)
    if sysfs_streq(text, "auto"):
        pm_runtime_allow(dev)
    elif sysfs_streq(text, "on"):
        pm_runtime_forbid(dev)
    else:
        raise ErrnoError(errno.EINVAL)
    return len(buf)


def _runtime_status_show(dev: Device) -> str:
    if dev.power.disable_depth:
        return "unsupported\n"
    return f"{dev.power.runtime_status}\n"


def _runtime_active_time_show(dev: Device) -> str:
    update_pm_runtime_accounting(dev)
    return f"{dev.power.active_time // NSEC_PER_MSEC}\n"


def _runtime_suspended_time_show(dev: Device) -> str:
    update_pm_runtime_accounting(dev)
    return f"{dev.power.suspended_time // NSEC_PER_MSEC}\n"


def _autosuspend_delay_ms_show(dev: Device) -> str:
    # autosuspend_delay_ms_show(): -EIO unless the driver uses autosuspend
    raise ErrnoError(errno.EIO)


async def _autosuspend_delay_ms_store(dev: Device, buf: bytes) -> int:
    raise ErrnoError(errno.EIO)


# pm_runtime_attrs, in the kernel's order
POWER_ATTRS = (
    SysfsAttr["Device"]("runtime_status", RO, _runtime_status_show),
    SysfsAttr["Device"]("control", RW, _control_show, _control_store),
    SysfsAttr["Device"]("runtime_suspended_time", RO, _runtime_suspended_time_show),
    SysfsAttr["Device"]("runtime_active_time", RO, _runtime_active_time_show),
    SysfsAttr["Device"](
        "autosuspend_delay_ms", RW, _autosuspend_delay_ms_show, _autosuspend_delay_ms_store
    ),
)


def dpm_sysfs_add(dev: Device) -> None:
    assert dev.kn is not None
    root = dev.kernel.kernfs
    create_group(root, root.create_dir(dev.kn, "power"), dev, POWER_ATTRS)


async def dpm_sysfs_remove(dev: Device) -> None:
    """The group goes first in device_del(), before anything else of the device."""
    assert dev.kn is not None
    power = dev.kn.lookup("power")
    if power is not None:
        await dev.kernel.kernfs.remove(power)
