"""``/sys/kernel`` files (kernel/ksysfs.c): ``uevent_seqnum`` and ``uevent_helper``."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError
from .sysfs import RO, RW, SysfsAttr, create_group

if TYPE_CHECKING:
    from .kernel import Kernel

UEVENT_HELPER_PATH_LEN = 256


def _uevent_seqnum_show(kernel: Kernel) -> str:
    return f"{kernel.uevent_seqnum}\n"


def _uevent_helper_show(kernel: Kernel) -> str:
    return f"{kernel.uevent_helper}\n"


async def _uevent_helper_store(kernel: Kernel, buf: bytes) -> int:
    if len(buf) + 1 > UEVENT_HELPER_PATH_LEN:
        raise ErrnoError(errno.ENOENT)
    kernel.uevent_helper = buf.split(b"\0", 1)[0].decode("latin-1").removesuffix("\n")
    return len(buf)


KERNEL_ATTRS = (
    SysfsAttr["Kernel"]("uevent_seqnum", RO, _uevent_seqnum_show),
    SysfsAttr["Kernel"]("uevent_helper", RW, _uevent_helper_show, _uevent_helper_store),
)


def ksysfs_init(kernel: Kernel) -> None:
    create_group(kernel.kernfs, kernel.sys_kernel_kn, kernel, KERNEL_ATTRS)
