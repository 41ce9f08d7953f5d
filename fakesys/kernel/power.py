"""The ``power/`` group every device has (drivers/base/power/sysfs.c dpm_sysfs_add()).

Runtime PM is never enabled on simulated devices, so ``runtime_status`` is ``unsupported``,
``control`` is ``auto`` and ``autosuspend_delay_ms`` fails with EIO, as for a real device whose
driver does not use runtime PM.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError
from .lib import buf_to_str
from .sysfs import RO, RW, SysfsAttr, create_group

if TYPE_CHECKING:
    from .core import Device


def _control_show(dev: Device) -> str:
    return "on\n" if dev.runtime_forbidden else "auto\n"


async def _control_store(dev: Device, buf: bytes) -> int:
    # control_store(): sysfs_streq against "auto" and "on", else -EINVAL
    text = buf_to_str(buf).removesuffix("\n")
    if text == "auto":
        dev.runtime_forbidden = False
    elif text == "on":
        dev.runtime_forbidden = True
    else:
        raise ErrnoError(errno.EINVAL)
    return len(buf)


def _autosuspend_delay_ms_show(dev: Device) -> str:
    # autosuspend_delay_ms_show(): -EIO unless the driver uses autosuspend
    raise ErrnoError(errno.EIO)


async def _autosuspend_delay_ms_store(dev: Device, buf: bytes) -> int:
    raise ErrnoError(errno.EIO)


POWER_ATTRS = (
    SysfsAttr["Device"]("control", RW, _control_show, _control_store),
    SysfsAttr["Device"]("runtime_status", RO, lambda dev: "unsupported\n"),
    SysfsAttr["Device"]("runtime_suspended_time", RO, lambda dev: "0\n"),
    SysfsAttr["Device"]("runtime_active_time", RO, lambda dev: "0\n"),
    SysfsAttr["Device"](
        "autosuspend_delay_ms", RW, _autosuspend_delay_ms_show, _autosuspend_delay_ms_store
    ),
)


def dpm_sysfs_add(dev: Device) -> None:
    assert dev.kn is not None
    root = dev.kernel.kernfs
    create_group(root, root.create_dir(dev.kn, "power"), dev, POWER_ATTRS)
