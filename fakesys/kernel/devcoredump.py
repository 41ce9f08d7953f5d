"""Device coredumps (drivers/base/devcoredump.c), in the behaviour of each kernel era.

A dump is ``/sys/devices/virtual/devcoredump/devcdN`` (N from 1, never reused) with ``data``
(0600, size 0: reads hand at most a page to the driver's read callback), ``failing_device``,
``subsystem``, ``uevent`` and ``power/``; ``/sys/class/devcoredump/devcdN``; the back-link
``devcoredump`` in the failing device's directory. One ``add`` uevent goes out once both links
exist. Any write of a byte or more deletes the dump, asynchronously; the timeout (five minutes
unless the driver chose another, on the engine's clock) does too. A dump pins the failing
device and, when created with an owner, its module. ``/sys/class/devcoredump/disabled`` takes
only ``1``, drops every dump, and makes later ones vanish at once.

The core's locking comes in two eras (kernel-abi.md §1):

``pre-fix`` (2024 to v6.17)
    The write takes ``devcd->mutex``; dev_coredump_put() holds the mutex while it flushes the
    deletion work, whose device_del() drains the writers of ``data``: lockdep sees the cycle.
``fixed`` (the 2025 "circular locking dependency" fix)
    The write only re-arms the work; deletion disables the work first, then takes the mutex.

and Rodrigo Vivi's patch (January 2024, not merged) makes every dump a devres
of its failing device, removed when that device unbinds.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError
from .calls import call, call_atomic
from .class_ import Class
from .core import Device, device_add, device_del, get_device, put_device
from .devres import Devres, devres_add
from .kobject_uevent import KOBJ_ADD, kobject_uevent
from .lib import buf_to_str, simple_strtol
from .lockdep import LockClass, kernfs_node_addr, work_class
from .printk import KERN_WARNING
from .stacktrace import current_module_name, frame, stack
from .sysfs import RW, SysfsAttr, SysfsBinAttr
from .workqueue import HZ, DelayedWork, jiffies_to_seconds

if TYPE_CHECKING:
    from .kernel import Kernel
    from .module import Module

DEVCD_TIMEOUT = 5 * 60.0  # seconds: HZ * 60 * 5
# Offsets in struct devcd_entry (a struct device with lockdep, then data, datalen, mutex, ...).
DEVCD_MUTEX_OFFSET = 0x310
DEVCD_DEL_WK_OFFSET = 0x378
CORE_PRE_FIX = "pre-fix"
CORE_FIXED = "fixed"
CORE_SEED = "seed"

DevcdRead = Callable[[int, int], Awaitable[bytes]]
DevcdFree = Callable[[], None]


@dataclass(frozen=True)
class DevcdLockClasses:
    """The lockdep classes of one core. Each era is a different kernel, so each has its own:
    orders seen under one must not be held against another."""

    mutex: LockClass
    work: LockClass
    data_active: LockClass


@dataclass
class DevcdEntry:
    """``struct devcd_entry``."""

    devcd: Devcoredump
    dev: Device  # the devcdN device
    failing_dev: Device
    owner: Module | None
    read: DevcdRead
    free: DevcdFree
    core: str
    del_wk: DelayedWork | None = None
    delete_work: bool = False  # pre-fix
    flushing: bool = False  # pre-fix: devcd_free() holds the mutex and flushes the work
    deleted: bool = False  # fixed
    init_completed: bool = False  # fixed
    released: bool = False

    def __post_init__(self) -> None:
        self.mutex = trio.Lock()
        self.obj = self.dev.kernel.slab.kmalloc(
            512, "struct devcd_entry", stack("kzalloc_noprof", "dev_coredumpm_timeout")
        )

    @property
    def kernel(self) -> Kernel:
        return self.dev.kernel

    @property
    def classes(self) -> DevcdLockClasses:
        return self.devcd.lock_classes(self.core)

    @property
    def mutex_addr(self) -> int:
        """&devcd->mutex inside the entry, after the struct device and the data pointers."""
        return self.obj.addr + DEVCD_MUTEX_OFFSET

    @property
    def data_addr(self) -> int:
        """The ``data`` node, whose active reference kernfs_drain() waits for."""
        data = self.dev.kn.lookup("data") if self.dev.kn is not None else None
        return kernfs_node_addr(data.ino if data is not None else 0)

    async def lock(self, at: str) -> None:
        self.kernel.lockdep.acquire(self.classes.mutex, self.mutex_addr, at)
        await self.mutex.acquire()

    def unlock(self) -> None:
        self.mutex.release()
        self.kernel.lockdep.release(self.classes.mutex)


class Devcoredump:
    """The devcoredump core: its class, its counter, the ``disabled`` switch, and which of
    the cores it is (``core``; a module may run on another, to show two side by side)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.core = CORE_FIXED
        self.count = 0
        self.disabled = False
        self.entries: dict[Device, DevcdEntry] = {}  # by devcd device
        self.cls = DevcdClass(kernel, self)
        self._lock_classes: dict[str, DevcdLockClasses] = {}
        self.lock_classes(CORE_PRE_FIX)  # registered first: its data is kn->active#4

    def lock_classes(self, core: str) -> DevcdLockClasses:
        if core not in self._lock_classes:
            self._lock_classes[core] = DevcdLockClasses(
                LockClass("&devcd->mutex"),
                work_class("(work_completion)(&(&devcd->del_wk)->work)"),
                self.kernel.lockdep.kn_active_class(f"devcd data ({core})"),
            )
        return self._lock_classes[core]

    def find(self, failing_dev: Device) -> DevcdEntry | None:
        """class_find_device(devcd_match_failing): a dump still on the class list."""
        return next(
            (e for e in self.entries.values() if e.failing_dev is failing_dev and e.dev.registered),
            None,
        )

    async def dev_coredumpm(
        self,
        failing_dev: Device,
        owner: Module | None,
        read: DevcdRead,
        free: DevcdFree,
        timeout: float = DEVCD_TIMEOUT,
        core: str = CORE_FIXED,
    ) -> DevcdEntry | None:
        """dev_coredumpm_timeout(): create the dump, or drop it (calling ``free``) when
        dumps are disabled, one exists for this device, or the owner is going away."""
        with frame("dev_coredumpm_timeout"):
            if self.disabled or self.find(failing_dev) is not None:
                free()
                return None
            if owner is not None and not owner.try_get():
                free()
                return None
            self.count += 1
            dev = Device(self.kernel, f"devcd{self.count}", cls=self.cls)
            entry = DevcdEntry(self, dev, get_device(failing_dev), owner, read, free, core)
            entry.del_wk = DelayedWork(
                self.kernel,
                lambda: self._devcd_del(entry),
                entry.classes.work,
                entry.obj.addr + DEVCD_DEL_WK_OFFSET,
            )
            dev.release = lambda _dev: self._devcd_dev_release(entry)
            dev.uevent_suppress = True
            self.entries[dev] = entry
            await entry.lock("dev_coredumpm_timeout")
            try:
                if core == CORE_FIXED:
                    entry.del_wk.schedule(timeout)
                await device_add(dev)
                self._create_links(entry)
                dev.uevent_suppress = False
                kobject_uevent(
                    self.kernel, KOBJ_ADD, dev.devpath(), dev.subsystem_name(), dev.uevent_env()
                )
                if core == CORE_FIXED:
                    entry.init_completed = True
                else:
                    entry.del_wk.schedule(timeout)
            finally:
                entry.unlock()
            if core == CORE_SEED:
                # The patch: remove the dump when the failing device goes (devm_add_action),
                # and cancel the timeout with it (devm_delayed_work_autocancel).
                remove = Devres("devcd_remove", lambda: self._seed_devcd_remove(entry))
                autocancel = Devres("devm_delayed_work_drop", lambda: self._seed_autocancel(entry))
                devres_add(failing_dev, remove)
                devres_add(failing_dev, autocancel)
            return entry

    def _create_links(self, entry: DevcdEntry) -> None:
        root = self.kernel.kernfs
        assert entry.dev.kn is not None and entry.failing_dev.kn is not None
        try:
            root.create_link(entry.dev.kn, "failing_device", entry.failing_dev.kn)
            root.create_link(entry.failing_dev.kn, "devcoredump", entry.dev.kn)
        except ErrnoError:
            entry.failing_dev.printk(KERN_WARNING, "devcoredump create_link failed")

    # -- reading and writing data --

    async def data_read(self, entry: DevcdEntry, offset: int, count: int) -> bytes:
        with frame("devcd_data_read"):
            return await entry.read(offset, count)

    async def data_write(self, entry: DevcdEntry, offset: int, data: bytes) -> int:
        """Any write deletes the dump, later, from the work."""
        assert entry.del_wk is not None
        lockdep = self.kernel.lockdep
        data_active = entry.classes.data_active
        with (
            frame("devcd_data_write"),
            lockdep.holding(data_active, entry.data_addr, "kernfs_fop_write_iter"),
        ):
            entry.obj.access(0x40, 8, write=False)
            if entry.core == CORE_FIXED:
                if entry.del_wk.cancel():
                    entry.del_wk.schedule(0)
            elif entry.flushing:
                # The mutex is held by devcd_free(), which flushes the work whose
                # device_del() waits for this very write: the three-way deadlock. The kernel
                # would hang all three here. fakesys records the dependency (lockdep reports
                # it) and lets the write end as it would have: the dump is being deleted.
                lockdep.acquire(entry.classes.mutex, entry.mutex_addr, "devcd_data_write")
                lockdep.release(entry.classes.mutex)
            else:
                await entry.lock("devcd_data_write")
                try:
                    if not entry.delete_work:
                        entry.delete_work = True
                        entry.del_wk.mod(0)
                finally:
                    entry.unlock()
        return len(data)

    # -- deletion --

    async def _devcd_del(self, entry: DevcdEntry) -> None:
        """The work: delete the device (devcd_del())."""
        with frame("devcd_del"):
            if entry.core == CORE_FIXED:
                await entry.lock("devcd_del")
                init_completed = entry.init_completed
                entry.unlock()
                if init_completed:
                    await self._devcd_del_device(entry)
            else:
                await self._devcd_del_device(entry)

    async def _devcd_del_device(self, entry: DevcdEntry) -> None:
        """__devcd_del(): device_del(), which drains the users of ``data``, then the put."""
        if entry.deleted:
            return
        entry.deleted = True
        # kernfs_drain() is a lock acquisition to lockdep (rwsem_acquire on kn->dep_map).
        # The class's dev_groups go in device_remove_attrs(), one kernfs_remove_by_name() each.
        with frame(
            "device_del",
            "device_remove_attrs",
            "sysfs_remove_groups",
            "sysfs_remove_group",
            "remove_files",
            "kernfs_remove_by_name_ns",
            "__kernfs_remove",
            "kernfs_drain",
        ):
            self.kernel.lockdep.acquire(entry.classes.data_active, entry.data_addr, "kernfs_drain")
            self.kernel.lockdep.release(entry.classes.data_active)
        await device_del(entry.dev)
        put_device(entry.dev)

    async def devcd_free(self, entry: DevcdEntry) -> None:
        """Delete synchronously (disabled, dev_coredump_put(), module exit)."""
        assert entry.del_wk is not None
        with frame("devcd_free"):
            if entry.core == CORE_FIXED:
                await entry.del_wk.disable_sync()
                await entry.lock("devcd_free")
                try:
                    await self._devcd_del_device(entry)
                finally:
                    entry.unlock()
            else:
                await entry.lock("devcd_free")
                entry.flushing = True
                try:
                    entry.delete_work = True
                    await self.kernel.hold.reach("devcd_free", entry.failing_dev)
                    await entry.del_wk.flush()
                finally:
                    entry.flushing = False
                    entry.unlock()

    async def dev_coredump_put(self, failing_dev: Device) -> None:
        """Delete the dump of ``failing_dev``, if there is one (v6.10)."""
        with frame("dev_coredump_put"):
            entry = self.find(failing_dev)
            if entry is not None:
                await self.devcd_free(entry)

    def _devcd_dev_release(self, entry: DevcdEntry) -> None:
        """The last put of the devcd device (devcd_dev_release())."""
        with frame("devcd_dev_release"):
            entry.free()
            if entry.owner is not None:
                entry.owner.put()
            failing = entry.failing_dev
            link = failing.kn.lookup("devcoredump") if failing.kn is not None else None
            if link is not None and failing.kn is not None and failing.kn.active:
                self.kernel.kernfs.remove_link(link)
            put_device(failing)
            del self.entries[entry.dev]
            entry.released = True
            self.kernel.slab.kfree(entry.obj, stack("kfree"))

    def _seed_devcd_remove(self, entry: DevcdEntry) -> None:
        """The devm action of the 2024 patch: devcd_remove_now() on the failing device's unbind."""
        assert entry.del_wk is not None
        with frame("devcd_remove"):
            if not entry.obj.access(0x40, 8, write=True):
                return
            if not entry.delete_work:
                entry.delete_work = True
                entry.del_wk.mod(0)

    def _seed_autocancel(self, entry: DevcdEntry) -> None:
        assert entry.del_wk is not None
        with frame("devm_delayed_work_drop"):
            if entry.obj.access(0x48, 8, write=True):
                entry.del_wk.cancel()

    async def disable(self) -> None:
        """``echo 1 > /sys/class/devcoredump/disabled``."""
        self.disabled = True
        for entry in list(self.entries.values()):
            if entry.dev.registered:
                await self.devcd_free(entry)


async def _disabled_store(cls: Class, buf: bytes) -> int:
    assert isinstance(cls, DevcdClass)
    # simple_strtol(): "1abc" counts as 1; anything but 1 is refused, 0 included.
    if simple_strtol(buf_to_str(buf)) != 1:
        raise ErrnoError(errno.EINVAL)
    await cls.core.disable()
    return len(buf)


def _disabled_show(cls: Class) -> str:
    assert isinstance(cls, DevcdClass)
    return f"{int(cls.core.disabled)}\n"


def _entry(dev: Device) -> DevcdEntry:
    assert isinstance(dev.cls, DevcdClass)
    return dev.cls.core.entries[dev]


async def _data_read(dev: Device, offset: int, count: int) -> bytes:
    entry = _entry(dev)
    return await entry.devcd.data_read(entry, offset, count)


async def _data_write(dev: Device, offset: int, data: bytes) -> int:
    entry = _entry(dev)
    return await entry.devcd.data_write(entry, offset, data)


class DevcdClass(Class):
    dev_bin_attrs = (SysfsBinAttr[Device]("data", 0o600, _data_read, _data_write, size=0),)
    class_attrs = (SysfsAttr[Class]("disabled", RW, _disabled_show, _disabled_store),)

    def __init__(self, kernel: Kernel, core: Devcoredump) -> None:
        super().__init__(kernel, "devcoredump")
        self.core = core


# -- the driver API (include/linux/devcoredump.h) --

GFP_KERNEL = 0xCC0


def _caller_core(kernel: Kernel) -> str:
    """The core the calling module runs on: its own if it has one, else the kernel's."""
    name = current_module_name()
    module = kernel.modules.get(name) if name is not None else None
    return (module.devcoredump_core if module is not None else None) or kernel.devcoredump.core


async def dev_coredumpm_timeout(
    dev: Device,
    owner: Module | None,
    data: object,
    datalen: int,
    gfp: int,
    read: Callable[[int, int, object, int], Awaitable[bytes] | bytes],
    free: Callable[[object], None],
    timeout: int,
) -> None:
    """Hand ``data`` to devcoredump: ``read(offset, count, data, datalen)`` serves ``data``
    reads, ``free(data)`` runs when the dump goes; ``timeout`` in jiffies. Dropped (``free``
    at once) when dumps are disabled, one exists for ``dev``, or ``owner`` is going."""
    kernel = dev.kernel

    async def devcd_read(offset: int, count: int) -> bytes:
        chunk: bytes = await call(kernel, read, offset, count, data, datalen)
        return chunk

    def devcd_free() -> None:
        call_atomic(kernel, free, data)

    await kernel.devcoredump.dev_coredumpm(
        dev, owner, devcd_read, devcd_free, jiffies_to_seconds(timeout), _caller_core(kernel)
    )


async def dev_coredumpm(
    dev: Device,
    owner: Module | None,
    data: object,
    datalen: int,
    gfp: int,
    read: Callable[[int, int, object, int], Awaitable[bytes] | bytes],
    free: Callable[[object], None],
) -> None:
    """dev_coredumpm_timeout() with the default five minutes."""
    await dev_coredumpm_timeout(
        dev, owner, data, datalen, gfp, read, free, round(DEVCD_TIMEOUT * HZ)
    )


def devcd_readv(offset: int, count: int, data: object, datalen: int) -> bytes:
    """memory_read_from_buffer(): EOF past the end."""
    assert isinstance(data, bytes | bytearray)
    return bytes(data[offset : min(offset + count, datalen)])


def devcd_freev(data: object) -> None:
    """vfree() of a dev_coredumpv() buffer: it stands alone, so nothing else is touched."""


async def dev_coredumpv(dev: Device, data: bytes, datalen: int, gfp: int) -> None:
    """A dump of a standalone buffer (vmalloc'ed and handed over): no owner is pinned, and
    reading it never calls into the driver."""
    await dev_coredumpm(dev, None, data, datalen, gfp, devcd_readv, devcd_freev)


async def dev_coredump_put(dev: Device) -> None:
    """Delete the dump of ``dev`` now, if there is one (v6.10)."""
    await dev.kernel.devcoredump.dev_coredump_put(dev)
