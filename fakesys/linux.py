"""The driver API: what a simulated driver imports, and all it imports.

A driver is a Python file written the way a kernel driver is written in C: its private struct
(a :class:`Struct`), its probe and remove, its file operations, its interrupt handler, and a
driver structure that names them, registered by the module's init::

    from fakesys.linux import Mutex, PlatformDevice, PlatformDriver, Struct, ...

    THIS_MODULE = this_module()

    class FooPriv(Struct):
        lock: Mutex
        count: int

    async def foo_probe(pdev: PlatformDevice) -> None:
        priv = devm_kzalloc(pdev, FooPriv)
        platform_set_drvdata(pdev, priv)

    foo_driver = PlatformDriver(name="foo", probe=foo_probe)
    module_platform_driver(foo_driver)

The calls have the kernel's names and semantics, with Python's types: errors are raised as
:class:`ErrnoError` instead of returned, a ``struct platform_device`` is its struct device,
pointers are references, and a function that may sleep is ``async`` (an interrupt handler, a
tasklet, a timer, a release callback and ``poll`` may not be, and the engine refuses them if
they are). Where a call differs from the kernel's, its docstring says how.

What the engine adds on top, without the driver doing anything:

* every read and write of a field of a struct from :func:`kzalloc` or :func:`devm_kzalloc`,
  and every use of a lock, wait queue, kref, work or timer embedded in one, is checked: after
  the memory is freed it is a KASAN report at that field, in the function that touched it;
* every function the core calls (probe, remove, the file operations, handlers, callbacks)
  appears in stacks under its own name and module; :func:`kernel_function` gives a helper
  of the driver's its own frame too;
* locks are known to lockdep by where they were initialised (``&priv->lock``);
* :func:`hold_point` marks a place where a script can stop the driver
  (``sys/kernel/debug/fakesys/hold/<name>``) to interleave two operations on purpose.

Loading a module executes its files afresh, as insmod gives each load its own code and data:
module-level variables are the module's statics, and what the file makes at load (its driver
structure, its file operations) lives in module memory, freed at unload.
"""

from __future__ import annotations

import errno as _errno
import os as _os
import sys as _sys
from collections.abc import Awaitable
from collections.abc import Callable as _Callable
from pathlib import Path as _Path
from typing import TypeVar as _TypeVar

from .kernel.calls import current_kernel as _current_kernel
from .kernel.calls import kernel_function as kernel_function
from .kernel.calls import resume_module_code as _resume_module_code
from .kernel.char_dev import MAJOR as MAJOR
from .kernel.char_dev import MINOR as MINOR
from .kernel.char_dev import MKDEV as MKDEV
from .kernel.char_dev import Cdev as Cdev
from .kernel.char_dev import Devt as Devt
from .kernel.char_dev import File as File
from .kernel.char_dev import FileOperations as FileOperations
from .kernel.char_dev import Inode as Inode
from .kernel.char_dev import alloc_chrdev_region as alloc_chrdev_region
from .kernel.char_dev import cdev_add as cdev_add
from .kernel.char_dev import cdev_del as cdev_del
from .kernel.char_dev import cdev_device_add as cdev_device_add
from .kernel.char_dev import cdev_device_del as cdev_device_del
from .kernel.char_dev import cdev_init as cdev_init
from .kernel.char_dev import register_chrdev_region as register_chrdev_region
from .kernel.char_dev import unregister_chrdev_region as unregister_chrdev_region
from .kernel.class_ import Class as Class
from .kernel.class_ import class_get as class_get
from .kernel.core import Device as Device
from .kernel.core import device_add as device_add
from .kernel.core import device_del as device_del
from .kernel.core import device_unregister as device_unregister
from .kernel.core import get_device as get_device
from .kernel.core import put_device as put_device
from .kernel.deferred_probe import EPROBE_DEFER as EPROBE_DEFER
from .kernel.deferred_probe import dev_err_probe as dev_err_probe
from .kernel.devcoredump import DEVCD_TIMEOUT as DEVCD_TIMEOUT
from .kernel.devcoredump import GFP_KERNEL as GFP_KERNEL
from .kernel.devcoredump import dev_coredump_put as dev_coredump_put
from .kernel.devcoredump import dev_coredumpm as dev_coredumpm
from .kernel.devcoredump import dev_coredumpm_timeout as dev_coredumpm_timeout
from .kernel.devcoredump import dev_coredumpsg as dev_coredumpsg
from .kernel.devcoredump import dev_coredumpv as dev_coredumpv
from .kernel.devres import devm_add_action as devm_add_action
from .kernel.devres import devm_add_action_or_reset as devm_add_action_or_reset
from .kernel.devres import devm_kfree as devm_kfree
from .kernel.devres import devm_kzalloc as devm_kzalloc
from .kernel.devres import devm_release_action as devm_release_action
from .kernel.devres import devm_remove_action as devm_remove_action
from .kernel.driver import Driver as Driver
from .kernel.driver import driver_register as driver_register
from .kernel.driver import driver_unregister as driver_unregister
from .kernel.hotplug import HotplugDevice as HotplugDevice
from .kernel.hotplug import HotplugDriver as HotplugDriver
from .kernel.hw import HW_STATUS_HANG as HW_STATUS_HANG
from .kernel.irq import IRQ_HANDLED as IRQ_HANDLED
from .kernel.irq import IRQ_NONE as IRQ_NONE
from .kernel.irq import IRQF_SHARED as IRQF_SHARED
from .kernel.irq import IrqLine as IrqLine
from .kernel.irq import Tasklet as Tasklet
from .kernel.irq import devm_free_irq as devm_free_irq
from .kernel.irq import devm_request_irq as devm_request_irq
from .kernel.irq import free_irq as free_irq
from .kernel.irq import request_irq as request_irq
from .kernel.irq import tasklet_kill as tasklet_kill
from .kernel.irq import tasklet_schedule as tasklet_schedule
from .kernel.irq import tasklet_setup as tasklet_setup
from .kernel.kernel import UTS_RELEASE as UTS_RELEASE
from .kernel.kfifo import Kfifo as Kfifo
from .kernel.kfifo import kfifo_alloc as kfifo_alloc
from .kernel.kfifo import kfifo_avail as kfifo_avail
from .kernel.kfifo import kfifo_free as kfifo_free
from .kernel.kfifo import kfifo_in as kfifo_in
from .kernel.kfifo import kfifo_is_empty as kfifo_is_empty
from .kernel.kfifo import kfifo_len as kfifo_len
from .kernel.kfifo import kfifo_out as kfifo_out
from .kernel.kfifo import kfifo_reset as kfifo_reset
from .kernel.kref import Kref as Kref
from .kernel.kref import kref_get as kref_get
from .kernel.kref import kref_get_unless_zero as kref_get_unless_zero
from .kernel.kref import kref_init as kref_init
from .kernel.kref import kref_put as kref_put
from .kernel.kref import kref_read as kref_read
from .kernel.locking import DEFINE_MUTEX as DEFINE_MUTEX
from .kernel.locking import DEFINE_SPINLOCK as DEFINE_SPINLOCK
from .kernel.locking import Mutex as Mutex
from .kernel.locking import SpinLock as SpinLock
from .kernel.locking import mutex_init as mutex_init
from .kernel.locking import mutex_is_locked as mutex_is_locked
from .kernel.locking import mutex_lock as mutex_lock
from .kernel.locking import mutex_lock_interruptible as mutex_lock_interruptible
from .kernel.locking import mutex_trylock as mutex_trylock
from .kernel.locking import mutex_unlock as mutex_unlock
from .kernel.locking import spin_lock as spin_lock
from .kernel.locking import spin_lock_init as spin_lock_init
from .kernel.locking import spin_lock_irqsave as spin_lock_irqsave
from .kernel.locking import spin_unlock as spin_unlock
from .kernel.locking import spin_unlock_irqrestore as spin_unlock_irqrestore
from .kernel.module import Module as Module
from .kernel.module import loading_kernel as _loading_kernel
from .kernel.module import module_exit as module_exit
from .kernel.module import module_init as module_init
from .kernel.module import module_param as module_param
from .kernel.module import this_module as this_module
from .kernel.panic import warn as _warn
from .kernel.pci import PCI_ANY_ID as PCI_ANY_ID
from .kernel.pci import PciDevice as PciDevice
from .kernel.pci import PciDeviceId as PciDeviceId
from .kernel.pci import PciDriver as PciDriver
from .kernel.platform import PlatformDevice as PlatformDevice
from .kernel.platform import PlatformDriver as PlatformDriver
from .kernel.printk import KERN_DEBUG as KERN_DEBUG
from .kernel.printk import KERN_ERR as KERN_ERR
from .kernel.printk import KERN_INFO as KERN_INFO
from .kernel.printk import KERN_NOTICE as KERN_NOTICE
from .kernel.printk import KERN_WARNING as KERN_WARNING
from .kernel.sched import current as _current
from .kernel.slab import Ptr as Ptr
from .kernel.slab import Struct as Struct
from .kernel.slab import atomic_t as atomic_t
from .kernel.slab import kfree as kfree
from .kernel.slab import kmalloc as kmalloc
from .kernel.slab import kzalloc as kzalloc
from .kernel.slab import long as long
from .kernel.slab import s32 as s32
from .kernel.slab import u8 as u8
from .kernel.slab import u16 as u16
from .kernel.slab import u32 as u32
from .kernel.slab import u64 as u64
from .kernel.stacktrace import current_frames as _current_frames
from .kernel.sysfs import DeviceAttribute as DeviceAttribute
from .kernel.sysfs import device_create_file as device_create_file
from .kernel.sysfs import device_remove_file as device_remove_file
from .kernel.sysfs import sysfs_attr_init as sysfs_attr_init
from .kernel.timer import TimerList as TimerList
from .kernel.timer import del_timer as del_timer
from .kernel.timer import del_timer_sync as del_timer_sync
from .kernel.timer import mod_timer as mod_timer
from .kernel.timer import timer_delete as timer_delete
from .kernel.timer import timer_delete_sync as timer_delete_sync
from .kernel.timer import timer_pending as timer_pending
from .kernel.timer import timer_setup as timer_setup
from .kernel.wait import Completion as Completion
from .kernel.wait import WaitQueueHead as WaitQueueHead
from .kernel.wait import complete as complete
from .kernel.wait import complete_all as complete_all
from .kernel.wait import init_completion as init_completion
from .kernel.wait import init_waitqueue_head as init_waitqueue_head
from .kernel.wait import poll_wait as poll_wait
from .kernel.wait import reinit_completion as reinit_completion
from .kernel.wait import wait_event_interruptible as wait_event_interruptible
from .kernel.wait import wait_event_timeout as wait_event_timeout
from .kernel.wait import wait_for_completion as wait_for_completion
from .kernel.wait import waitqueue_active as waitqueue_active
from .kernel.wait import wake_up as wake_up
from .kernel.wait import wake_up_all as wake_up_all
from .kernel.wait import wake_up_interruptible as wake_up_interruptible
from .kernel.workqueue import HZ as HZ
from .kernel.workqueue import INIT_DELAYED_WORK as INIT_DELAYED_WORK
from .kernel.workqueue import INIT_WORK as INIT_WORK
from .kernel.workqueue import DelayedWork as DelayedWork
from .kernel.workqueue import WorkStruct as WorkStruct
from .kernel.workqueue import cancel_delayed_work as cancel_delayed_work
from .kernel.workqueue import cancel_delayed_work_sync as cancel_delayed_work_sync
from .kernel.workqueue import cancel_work_sync as cancel_work_sync
from .kernel.workqueue import flush_delayed_work as flush_delayed_work
from .kernel.workqueue import flush_work as flush_work
from .kernel.workqueue import jiffies as jiffies
from .kernel.workqueue import mod_delayed_work as mod_delayed_work
from .kernel.workqueue import msecs_to_jiffies as msecs_to_jiffies
from .kernel.workqueue import schedule_delayed_work as schedule_delayed_work
from .kernel.workqueue import schedule_work as schedule_work
from .kernfs import PAGE_SIZE as PAGE_SIZE
from .kernfs import ErrnoError as ErrnoError

EAGAIN = _errno.EAGAIN
EBUSY = _errno.EBUSY
EEXIST = _errno.EEXIST
EFAULT = _errno.EFAULT
EINTR = _errno.EINTR
EINVAL = _errno.EINVAL
EIO = _errno.EIO
ENODEV = _errno.ENODEV
ENOENT = _errno.ENOENT
ENOMEM = _errno.ENOMEM
ENOSPC = _errno.ENOSPC
ENXIO = _errno.ENXIO
EPERM = _errno.EPERM
O_NONBLOCK = _os.O_NONBLOCK

_S = _TypeVar("_S", bound=Struct)
#: Where the paths of WARN()s are relative to, as the kernel's are to its source tree.
_SOURCE_ROOT = _Path(__file__).resolve().parent.parent


# -- the small things a driver reaches for --


def container_of(member: object, cls: type[_S], field: str) -> _S:
    """The struct of type ``cls`` that ``member`` (an embedded kernel object) is field
    ``field`` of."""
    container = getattr(member, "_container", None)
    if not isinstance(container, cls) or getattr(member, "_field", None) != field:
        raise TypeError(f"{member!r} is not the {field} of a struct {cls.__c_name__}")
    return container


_Show = _Callable[[Device, DeviceAttribute], str]
_Store = _Callable[[Device, DeviceAttribute, bytes], Awaitable[int]]


def DEVICE_ATTR_RO(name: str, show: _Show) -> DeviceAttribute:
    """A read-only (0444) attribute ``name``: ``show(dev, attr) -> str``."""
    return DeviceAttribute(name, 0o444, show=show)


def DEVICE_ATTR_RW(name: str, show: _Show, store: _Store) -> DeviceAttribute:
    """A 0644 attribute: ``show(dev, attr)``, and ``async store(dev, attr, buf) -> count``."""
    return DeviceAttribute(name, 0o644, show=show, store=store)


def DEVICE_ATTR_WO(name: str, store: _Store) -> DeviceAttribute:
    """A write-only (0200) attribute."""
    return DeviceAttribute(name, 0o200, store=store)


def dev_set_drvdata(dev: Device, data: object) -> None:
    dev.driver_data = data


def dev_get_drvdata(dev: Device) -> object:
    return dev.driver_data


platform_set_drvdata = dev_set_drvdata
platform_get_drvdata = dev_get_drvdata
pci_set_drvdata = dev_set_drvdata
pci_get_drvdata = dev_get_drvdata


def dev_name(dev: Device) -> str:
    return dev.name


def dev_driver_string(dev: Device) -> str:
    """The driver's name, else the bus's, else the class's."""
    return dev.driver_string()


def ktime_get_ns() -> int:
    """Nanoseconds since boot, on the engine's clock."""
    return _current_kernel().clock.now_ns()


def current_comm() -> str:
    """``current->comm``."""
    return _current().comm


def device_initialize(
    name: str,
    *,
    parent: Device | None = None,
    cls: Class | None = None,
    devt: Devt | None = None,
    devtype: str | None = None,
) -> Device:
    """device_initialize() and dev_set_name() of a struct device of the driver's (here a
    device is its own object, never embedded in the driver's struct; put_device() releases
    it)."""
    kernel = parent.kernel if parent is not None else _current_kernel()
    return Device(kernel, name, parent=parent, cls=cls, devt=devt, devtype=devtype)


def platform_get_irq(pdev: Device, num: int) -> IrqLine:
    """The device's interrupt line (every simulated device has one, whatever its bus)."""
    return pdev.hw.irq


def pci_irq_vector(pdev: PciDevice, num: int) -> IrqLine:
    return pdev.hw.irq


def hw_rx_read(dev: Device, count: int = 1 << 16) -> bytes:
    """Read up to ``count`` bytes from the device's receive FIFO (the simulated hardware's
    data register): what ``sys/kernel/debug/fakesys/devices/<dev>/feed`` delivered."""
    return dev.hw.rx_read(count)


def hw_status_read(dev: Device) -> int:
    """Read (and so clear) the device's status register: :data:`HW_STATUS_HANG` once the
    hardware hung (``sys/kernel/debug/fakesys/devices/<dev>/hang``)."""
    return dev.hw.status_read()


def WARN(condition: object, message: str) -> bool:
    """WARN(): when ``condition`` holds, the "cut here" report with ``message`` at this line
    of the calling file, in the function of the innermost frame, and taint W; the condition
    either way."""
    if condition:
        caller = _sys._getframe(1)
        path = _Path(caller.f_code.co_filename)
        if path.is_relative_to(_SOURCE_ROOT):
            path = path.relative_to(_SOURCE_ROOT)
        frames = _current_frames()
        name, module = frames[-1] if frames else (caller.f_code.co_name, None)
        _warn(_current_kernel(), message, f"{path}:{caller.f_lineno}", name, module)
    return bool(condition)


def module_driver(drv: Driver) -> None:
    """module_driver(): the module's init registers ``drv`` and its exit unregisters it."""

    async def init() -> None:
        await driver_register(drv)

    async def exit() -> None:
        await driver_unregister(drv)

    init.__name__ = f"{drv.name}_driver_init"
    exit.__name__ = f"{drv.name}_driver_exit"
    # The macro expands in the driver's file: its init and exit are the module's code.
    init.__this_module__ = exit.__this_module__ = drv.owner  # type: ignore[attr-defined]
    module_init(init)
    module_exit(exit)


module_platform_driver = module_driver
module_pci_driver = module_driver
platform_driver_register = driver_register
platform_driver_unregister = driver_unregister
pci_register_driver = driver_register
pci_unregister_driver = driver_unregister


def try_module_get(module: Module | None) -> bool:
    """try_module_get(): NULL always succeeds; a going module fails."""
    return module is None or module.try_get()


def module_put(module: Module | None) -> None:
    if module is not None:
        module.put()


async def hold_point(name: str, dev: Device | None = None) -> None:
    """Stop here while ``hold/<name>`` (or ``devices/<dev>/hold/<name>``) is armed, then
    pause for ``delay/<name>`` milliseconds of the engine's clock."""
    await _current_kernel().hold.reach(name, dev.physical() if dev is not None else None)
    _resume_module_code()


def DEFINE_HOLD_POINT(name: str, description: str) -> None:
    """Declare a hold point of the driver's own, at the top of its file."""
    _loading_kernel().hold.define(name, description)


class Ida:
    """``struct ida``: small ids, lowest free first."""

    def __init__(self) -> None:
        self.used: set[int] = set()


def ida_alloc(ida: Ida) -> int:
    n = min(set(range(len(ida.used) + 1)) - ida.used)
    ida.used.add(n)
    return n


def ida_free(ida: Ida, n: int) -> None:
    ida.used.discard(n)


def _printk(level: int) -> _Callable[[Device, str], None]:
    def dev_printk(dev: Device, message: str) -> None:
        dev.printk(level, message)

    return dev_printk


dev_err = _printk(KERN_ERR)
dev_warn = _printk(KERN_WARNING)
dev_notice = _printk(KERN_NOTICE)
dev_info = _printk(KERN_INFO)
dev_dbg = _printk(KERN_DEBUG)


def _pr(level: int) -> _Callable[[str], None]:
    def printk(message: str) -> None:
        _current_kernel().log.emit(level, message)

    return printk


pr_err = _pr(KERN_ERR)
pr_warn = _pr(KERN_WARNING)
pr_notice = _pr(KERN_NOTICE)
pr_info = _pr(KERN_INFO)
pr_debug = _pr(KERN_DEBUG)
