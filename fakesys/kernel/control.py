"""fakesys's control plane, in the style of debugfs: ``sys/kernel/debug/fakesys/``.

================================  ===========================================================
``delete_module``                 write a module name: rmmod (ENOENT unknown, EWOULDBLOCK in use)
``init_module``                   write a module name: load it again (EEXIST if loaded)
``hold/<point>``                  ``1`` arms, ``0`` releases; reads ``off``, ``armed`` or ``held``
``delay/<point>``                 a pause in milliseconds at the same place
``kasan_multi_shot``              ``1``: report every use after free, not only the first
``devices/<dev>/feed``            bytes written here arrive from the device's hardware
``devices/<dev>/irq``             a write raises the device's interrupt; reads the count
================================  ===========================================================

The hold points are listed in :data:`fakesys.kernel.hold.HOLD_POINTS`.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError, KernfsNode
from .hold import HOLD_POINTS, HoldPoint
from .hw import Hardware
from .lib import buf_to_str, kstrtobool, kstrtoul
from .module import delete_module
from .sysfs import RW, WO, SysfsAttr, create_file

if TYPE_CHECKING:
    from .kernel import Kernel

CONTROL_MODE = 0o600


def _module_name(buf: bytes) -> str:
    name = buf_to_str(buf).strip()
    if not name:
        raise ErrnoError(errno.EINVAL)
    return name


async def _delete_module_store(kernel: Kernel, buf: bytes) -> int:
    await delete_module(kernel, _module_name(buf))
    return len(buf)


async def _init_module_store(kernel: Kernel, buf: bytes) -> int:
    name = _module_name(buf)
    if name in kernel.modules:
        raise ErrnoError(errno.EEXIST)
    if kernel.module_loader is None:
        raise ErrnoError(errno.ENOENT)
    await kernel.module_loader(name)
    return len(buf)


def _multi_shot_show(kernel: Kernel) -> str:
    return f"{int(kernel.kasan.multi_shot)}\n"


async def _multi_shot_store(kernel: Kernel, buf: bytes) -> int:
    kernel.kasan.multi_shot = kstrtobool(buf_to_str(buf))
    return len(buf)


async def _hold_store(point: HoldPoint, buf: bytes) -> int:
    point.store(buf)
    return len(buf)


def _delay_show(point: HoldPoint) -> str:
    return f"{point.delay_ms}\n"


async def _delay_store(point: HoldPoint, buf: bytes) -> int:
    point.delay_ms = kstrtoul(buf_to_str(buf), 10)
    return len(buf)


async def _feed_store(hw: Hardware, buf: bytes) -> int:
    hw.feed(buf)
    return len(buf)


def _irq_show(hw: Hardware) -> str:
    return f"{hw.irq.count}\n"


async def _irq_store(hw: Hardware, buf: bytes) -> int:
    hw.irq.raise_irq()
    return len(buf)


KERNEL_FILES = (
    SysfsAttr["Kernel"]("delete_module", WO, store=_delete_module_store),
    SysfsAttr["Kernel"]("init_module", WO, store=_init_module_store),
    SysfsAttr["Kernel"]("kasan_multi_shot", RW, _multi_shot_show, _multi_shot_store),
)
HW_FILES = (
    SysfsAttr[Hardware]("feed", WO, store=_feed_store),
    SysfsAttr[Hardware]("irq", CONTROL_MODE, _irq_show, _irq_store),
)


def control_dir(kernel: Kernel) -> KernfsNode:
    return kernel.kernfs.mkdir_p("sys/kernel/debug/fakesys")


def create_control_files(kernel: Kernel) -> None:
    root = kernel.kernfs
    top = control_dir(kernel)
    for attr in KERNEL_FILES:
        create_file(root, top, kernel, attr)
    holds = root.create_dir(top, "hold")
    delays = root.create_dir(top, "delay")
    for name in HOLD_POINTS:
        point = kernel.hold[name]
        create_file(root, holds, point, SysfsAttr(name, CONTROL_MODE, HoldPoint.show, _hold_store))
        create_file(root, delays, point, SysfsAttr(name, CONTROL_MODE, _delay_show, _delay_store))
    root.create_dir(top, "devices")


def add_hardware_controls(kernel: Kernel, name: str, hw: Hardware) -> None:
    """``devices/<name>/``: the hardware of a device, there whether or not it is bound."""
    devices = control_dir(kernel).lookup("devices")
    assert devices is not None
    directory = kernel.kernfs.create_dir(devices, name)
    for attr in HW_FILES:
        create_file(kernel.kernfs, directory, hw, attr)
