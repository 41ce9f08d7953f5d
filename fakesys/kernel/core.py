"""Devices: registration, removal and their sysfs directory (drivers/base/core.c).

A :class:`Device` is reference counted (get_device/put_device); device_del() takes it out of
sysfs and off its bus, unbinding its driver on the way, and the last put frees it. Where the
directory goes follows get_device_parent(): below the parent's directory, below a class glue
directory, or in ``devices/virtual/<class>/`` for a class device without a parent.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError, KernfsNode
from .char_dev import devtmpfs_create_node, devtmpfs_delete_node
from .hw import Hardware
from .kobject_uevent import KOBJ_ADD, KOBJ_REMOVE, kobject_synth_uevent, kobject_uevent
from .kref import Kref
from .lockdep import DEV_MUTEX, held
from .power import DevPmInfo, dpm_sysfs_add, dpm_sysfs_remove
from .printk import KERN_ERR
from .stacktrace import frame
from .sysfs import RO, RW, SysfsAttr, create_file, create_group

if TYPE_CHECKING:
    from .bus import BusType
    from .class_ import Class
    from .devres import Devres
    from .driver import Driver
    from .kernel import Kernel


DEFAULT_DEVNODE_MODE = 0o600


_DEVICE_BASE = 0xFFFF888105400000


class DeviceLock:
    """device_lock(): serializes probe, remove and the sysfs stores that change binding.

    Lockdep lists it as ``&dev->mutex`` in a report's held locks and never checks its order:
    device_initialize() gives it lockdep_set_novalidate_class()."""

    _addresses = itertools.count()

    def __init__(self, dev: Device) -> None:
        self._lock = trio.Lock()
        # struct device is embedded in a bigger struct in the slab; its mutex near the start.
        self.addr = _DEVICE_BASE + next(self._addresses) * 0x800 + 0x1A0
        self._held: contextlib.ExitStack | None = None

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        stack = contextlib.ExitStack()
        stack.enter_context(held(DEV_MUTEX, self.addr))
        self._held = stack

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._held is not None
        self._held.close()
        self._held = None
        self._lock.release()


class Device:
    """``struct device``: what the driver core knows of one device."""

    def __init__(
        self,
        kernel: Kernel,
        name: str,
        *,
        bus: BusType | None = None,
        cls: Class | None = None,
        parent: Device | None = None,
        devt: tuple[int, int] | None = None,
        devtype: str | None = None,
    ) -> None:
        self.kernel = kernel
        self.name = name
        self.bus = bus
        self.cls = cls
        self.parent = parent
        self.devt = devt
        self.devtype = devtype
        self.driver: Driver | None = None
        self.driver_data: object = None
        self.driver_override: str | None = None
        self.power = DevPmInfo()
        #: dev_set_uevent_suppress(): device_add() sends no ``add`` event.
        self.uevent_suppress = False
        #: What the class's devnode() gives for this device: the path below /dev
        #: (``dri/card0``) if not the name, and the node's mode if not 0600 (then also
        #: ``DEVMODE`` in its uevent).
        self.devnode: str | None = None
        self.devnode_mode: int | None = None
        self.hw = Hardware()
        #: The names of the devices that must be bound before this one probes (device links).
        self.suppliers: list[str] = []
        #: Why its probe was deferred, as ``devices_deferred`` shows it (dev_err_probe()).
        self.deferred_probe_reason: str | None = None
        self.devres: list[Devres] = []
        self.kn: KernfsNode | None = None
        self.dead = False
        self.lock = DeviceLock(self)
        self.kref = Kref(self._release)
        self.released = False
        #: Called once the last reference is gone (the bus's or class's release).
        self.release: Callable[[Device], None] | None = None

    def __repr__(self) -> str:
        return f"<Device {self.name}>"

    #: Whether devtmpfs makes a /dev node for the device's number.
    devtmpfs_node = True

    def get_device_parent(self) -> KernfsNode:
        """get_device_parent(): the directory the device's directory goes in."""
        return _parent_dir(self)

    def add_files(self) -> None:
        """The files the device's class and bus give it (device_add_attrs(), the bus's
        dev_groups in bus_add_device()), its ``power/`` group (dpm_sysfs_add()) and its
        hardware's attributes."""
        assert self.kn is not None
        root = self.kernel.kernfs
        if self.cls is not None:
            self.cls.add_device_attrs(self)
        if self.bus is not None:
            create_group(root, self.kn, self, self.bus.dev_attrs)
        dpm_sysfs_add(self)
        for name in self.hw.attrs:
            create_file(root, self.kn, self, SysfsAttr(name, RO, _hw_attr_show(name)))

    def matches(self, drv: Driver) -> bool:
        """Whether ``drv`` may bind this device, driver_override aside: the bus's match."""
        assert self.bus is not None
        return self.bus.match(self, drv)

    @property
    def registered(self) -> bool:
        """device_is_registered(): in sysfs."""
        return self.kn is not None and self.kn.active

    def _release(self) -> None:
        self.released = True
        if self.release is not None:
            with frame("device_release"):  # the ktype's release, which calls the device's
                self.release(self)

    def devpath(self) -> str:
        """The DEVPATH of uevents: the directory below /sys."""
        assert self.kn is not None
        return self.kn.path().removeprefix("/sys")

    def devnode_path(self) -> str:
        """The node's path below /dev (device_get_devnode()): the class's devnode() name if
        it set one, else the device name with ``!`` for ``/``."""
        return self.devnode or self.name.replace("!", "/")

    def physical(self) -> Device:
        """The device on a bus behind a class device (a node's hardware), or itself."""
        dev = self
        while dev.bus is None and dev.parent is not None:
            dev = dev.parent
        return dev

    @property
    def sends_uevents(self) -> bool:
        """dev_uevent_filter(): only a device on a bus or in a class has events; a bare
        parent such as ``/sys/devices/platform`` or a PCI host bridge has none."""
        return self.bus is not None or self.cls is not None

    def subsystem_name(self) -> str:
        if self.cls is not None:
            return self.cls.name
        if self.bus is not None:
            return self.bus.name
        return ""

    def driver_string(self) -> str:
        """dev_driver_string(): the driver's name, else the bus's, else the class's."""
        if self.driver is not None:
            return self.driver.name
        return self.subsystem_name()

    # dev_printk() family: "<driver> <device>: message", with the SUBSYSTEM/DEVICE dictionary.
    def printk(self, level: int, message: str) -> None:
        subsystem = self.subsystem_name()
        dictionary: tuple[tuple[str, str], ...] = ()
        if subsystem:
            if self.devt is not None:
                device = f"c{self.devt[0]}:{self.devt[1]}"
            else:
                device = f"+{subsystem}:{self.name}"
            dictionary = (("SUBSYSTEM", subsystem), ("DEVICE", device))
        prefix = f"{self.driver_string()} {self.name}: " if subsystem else f"{self.name}: "
        self.kernel.log.emit(level, prefix + message, dictionary=dictionary)

    def uevent_env(self) -> list[tuple[str, str]]:
        """The variables dev_uevent() and the bus/class add, in order (``uevent`` file)."""
        env: list[tuple[str, str]] = []
        if self.devt is not None:
            env.append(("MAJOR", str(self.devt[0])))
            env.append(("MINOR", str(self.devt[1])))
            env.append(("DEVNAME", self.devnode_path()))
            if self.devnode_mode:  # dev_uevent(): only when devnode() gave a mode
                env.append(("DEVMODE", f"{self.devnode_mode:#o}".replace("0o", "0")))
        if self.devtype is not None:
            env.append(("DEVTYPE", self.devtype))
        if self.driver is not None:
            env.append(("DRIVER", self.driver.name))
        if self.bus is not None:
            env.extend(self.bus.uevent(self))
        return env


def get_device(dev: Device) -> Device:
    dev.kref.get()
    return dev


def put_device(dev: Device) -> None:
    # kobject_put(): kref_put(), kobject_release() and kobject_cleanup() are inlined
    with frame("put_device", "kobject_put"):
        dev.kref.put()


# -- the attributes every device has --


def _uevent_show(dev: Device) -> str:
    return "".join(f"{key}={value}\n" for key, value in dev.uevent_env())


async def _uevent_store(dev: Device, buf: bytes) -> int:
    try:
        kobject_synth_uevent(dev.kernel, dev.devpath(), dev.subsystem_name(), dev.uevent_env(), buf)
    except ErrnoError as e:
        dev.printk(KERN_ERR, f"uevent: failed to send synthetic uevent: {-e.errno}")
        raise
    return len(buf)


def _dev_show(dev: Device) -> str:
    assert dev.devt is not None
    return f"{dev.devt[0]}:{dev.devt[1]}\n"


DEV_ATTR_UEVENT = SysfsAttr[Device]("uevent", RW, _uevent_show, _uevent_store)
DEV_ATTR_DEV = SysfsAttr[Device]("dev", RO, _dev_show)


def _hw_attr_show(name: str) -> Callable[[Device], str]:
    def show(dev: Device) -> str:
        return f"{dev.hw.attrs[name]}\n"

    return show


def _parent_dir(dev: Device) -> KernfsNode:
    """get_device_parent(): where the device's directory goes."""
    kernel = dev.kernel
    if dev.cls is not None:
        if dev.parent is None:
            return kernel.kernfs.mkdir_p(f"sys/devices/virtual/{dev.cls.name}")
        assert dev.parent.kn is not None
        if dev.parent.cls is dev.cls:
            return dev.parent.kn
        glue = dev.parent.kn.lookup(dev.cls.name)
        return glue or kernel.kernfs.create_dir(dev.parent.kn, dev.cls.name)
    if dev.parent is not None:
        assert dev.parent.kn is not None
        return dev.parent.kn
    return kernel.devices_kn


async def device_add(dev: Device) -> None:
    """Put the device in sysfs, on its bus and in its class, then probe it (device_add()).

    A step that fails undoes the steps before it, newest first, as device_add()'s error
    labels do, so a device that could not be added leaves nothing behind: no directory, no
    class or bus link, no ``/sys/dev`` entry, no reference on its parent.
    """
    kernel = dev.kernel
    root = kernel.kernfs
    parent_kn = dev.get_device_parent()
    if parent_kn.lookup(dev.name) is not None:
        root.duplicate(parent_kn, dev.name)
        raise ErrnoError(errno.EEXIST)
    if dev.parent is not None:
        get_device(dev.parent)
    undo: list[Callable[[], Awaitable[None]]] = []
    try:
        dev.kn = root.create_dir(parent_kn, dev.name)
        undo.append(lambda: _remove_dir(dev, parent_kn))
        create_file(root, dev.kn, dev, DEV_ATTR_UEVENT)
        if dev.cls is not None:
            dev.cls.add_device_links(dev)
            undo.append(lambda: _remove_class_links(dev))
        if dev.bus is not None:
            dev.bus.add_device(dev)
            undo.append(lambda: _remove_bus_links(dev))
        dev.add_files()
        if dev.devt is not None:
            create_file(root, dev.kn, dev, DEV_ATTR_DEV)
            kernel.add_sys_dev_entry(dev)
            undo.append(lambda: kernel.remove_sys_dev_entry(dev))
            if dev.devtmpfs_node:
                await devtmpfs_create_node(dev, dev.devnode_mode or DEFAULT_DEVNODE_MODE)
    except ErrnoError:
        for step in reversed(undo):
            await step()
        dev.kn = None
        if dev.parent is not None:
            put_device(dev.parent)
        raise
    if dev.sends_uevents and not dev.uevent_suppress:
        kobject_uevent(kernel, KOBJ_ADD, dev.devpath(), dev.subsystem_name(), dev.uevent_env())
    if dev.bus is not None:
        with frame("device_add"):
            await dev.bus.probe_device(dev)


async def _remove_dir(dev: Device, parent_kn: KernfsNode) -> None:
    assert dev.kn is not None
    await dev.kernel.kernfs.remove(dev.kn)
    await _remove_glue_dir(dev, parent_kn)


async def _remove_glue_dir(dev: Device, glue: KernfsNode | None) -> None:
    """cleanup_glue_dir(): a class glue directory goes with its last device. The class's
    directory in ``devices/virtual/`` is one too (get_device_parent() makes it with
    class_dir_create_and_add() under virtual_device_parent()), so
    ``/sys/devices/virtual/devcoredump`` goes with the last dump."""
    if (
        glue is not None
        and dev.cls is not None
        and (dev.parent is None or glue is not dev.parent.kn)
        and not glue.children
    ):
        await dev.kernel.kernfs.remove(glue)


async def _remove_class_links(dev: Device) -> None:
    assert dev.cls is not None
    await dev.cls.remove_device_links(dev)


async def _remove_bus_links(dev: Device) -> None:
    assert dev.bus is not None
    await dev.bus.remove_device_links(dev)
    dev.bus.devices.remove(dev)


async def device_del(dev: Device) -> None:
    """Take the device out of the system, in device_del()'s order: it is marked dead so no
    driver can bind any more; its ``power/`` group, ``dev`` file, class links, ``uevent`` file
    and attributes go; bus_remove_device() takes the bus's attributes and links and only then
    unbinds the driver, whose remove() so runs on a directory already emptied of them; then the
    ``remove`` uevent, and the directory goes once callbacks in flight have returned."""
    kernel = dev.kernel
    root = kernel.kernfs
    async with dev.lock:
        dev.dead = True
    kernel.deferred_probe.delete(dev)
    await dpm_sysfs_remove(dev)
    if dev.devt is not None:
        if dev.devtmpfs_node:
            await devtmpfs_delete_node(dev)
        await kernel.remove_sys_dev_entry(dev)
        await _remove_files(dev, (DEV_ATTR_DEV.name,))
    if dev.cls is not None:
        await dev.cls.remove_device_links(dev)
    await _remove_files(dev, (DEV_ATTR_UEVENT.name,))
    await device_remove_attrs(dev)
    devpath = dev.devpath()
    if dev.bus is not None:
        await dev.bus.remove_device(dev)
    if dev.sends_uevents:
        # The variables are those after the unbind (no DRIVER), as kobject_uevent() asks
        # dev_uevent() for them only now.
        kobject_uevent(kernel, KOBJ_REMOVE, devpath, dev.subsystem_name(), dev.uevent_env())
    assert dev.kn is not None
    glue = dev.kn.parent
    await root.remove(dev.kn)
    await _remove_glue_dir(dev, glue)
    if dev.parent is not None:
        put_device(dev.parent)


async def _remove_files(dev: Device, names: Iterable[str]) -> None:
    """sysfs_remove_file() of each name the device's directory has."""
    assert dev.kn is not None
    for name in names:
        kn = dev.kn.lookup(name)
        if kn is not None:
            await dev.kernel.kernfs.remove(kn)


async def device_remove_attrs(dev: Device) -> None:
    """The device's own attributes (the hardware's) and its class's dev_groups."""
    await _remove_files(dev, dev.hw.attrs)
    if dev.cls is not None:
        cls = dev.cls
        await _remove_files(dev, (a.name for a in cls.dev_attrs))
        await _remove_files(dev, (a.name for a in cls.dev_bin_attrs))


async def device_unregister(dev: Device) -> None:
    await device_del(dev)
    put_device(dev)
