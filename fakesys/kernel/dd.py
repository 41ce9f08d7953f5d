"""Binding drivers to devices (drivers/base/dd.c).

The order of steps is the kernel's. really_probe(): the device's suppliers are checked,
``dev->driver`` is set, the sysfs links are made, the driver's probe runs; on failure the links
go and devres is released, and a probe that asked for deferral puts the device on the deferred
list (:mod:`.deferred_probe`), retried whenever another device gets bound. Unbind
(__device_release_driver()): the links go first, then the driver's remove runs, then devres is
released (device_unbind_cleanup()), then the ``unbind`` uevent is sent. Between remove and the
devres release is exactly where a devm-managed object is still reachable from an open file.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import ErrnoError
from .deferred_probe import EPROBE_DEFER as EPROBE_DEFER  # noqa: PLC0414 (re-exported)
from .deferred_probe import device_links_check_suppliers
from .devres import devres_release_all
from .kobject_uevent import KOBJ_BIND, KOBJ_UNBIND, kobject_uevent
from .printk import KERN_CRIT, KERN_DEBUG, KERN_ERR
from .stacktrace import enter, frame
from .sysfs import WO, SysfsAttr, create_file

if TYPE_CHECKING:
    from .core import Device
    from .driver import Driver


def driver_match_device(drv: Driver, dev: Device) -> bool:
    """driver_match_device(): the bus's match, honouring driver_override."""
    if dev.driver_override is not None:
        return dev.driver_override == drv.name
    return dev.matches(drv)


async def coredump_store(dev: Device, buf: bytes) -> int:
    """``/sys/devices/.../coredump`` (0200): anything written runs the driver's .coredump()
    under the device lock."""
    async with dev.lock:
        if dev.driver is not None:
            await dev.driver.coredump(dev)
    return len(buf)


DEV_ATTR_COREDUMP = SysfsAttr["Device"]("coredump", WO, store=coredump_store)


def driver_sysfs_add(dev: Device) -> None:
    """The ``<drv>/<dev>`` and ``<dev>/driver`` links, and ``coredump`` when the driver
    can dump."""
    drv = dev.driver
    assert drv is not None and drv.kn is not None and dev.kn is not None
    root = dev.kernel.kernfs
    root.create_link(drv.kn, dev.name, dev.kn)
    root.create_link(dev.kn, "driver", drv.kn)
    if drv.has_coredump:
        create_file(root, dev.kn, dev, DEV_ATTR_COREDUMP)


async def driver_sysfs_remove(dev: Device) -> None:
    drv = dev.driver
    assert drv is not None and drv.kn is not None and dev.kn is not None
    root = dev.kernel.kernfs
    for kn in (drv.kn.lookup(dev.name), dev.kn.lookup("driver"), dev.kn.lookup("coredump")):
        if kn is not None:
            await root.remove(kn)


def driver_bound(dev: Device) -> None:
    assert dev.driver is not None
    dev.driver.devices.append(dev)
    # No longer deferred; and a new binding may be what the deferred devices wait for.
    dev.kernel.deferred_probe.delete(dev)
    dev.kernel.deferred_probe.trigger()
    kobject_uevent(dev.kernel, KOBJ_BIND, dev.devpath(), dev.subsystem_name(), dev.uevent_env())


async def device_unbind_cleanup(dev: Device) -> None:
    with frame("device_unbind_cleanup"):
        await devres_release_all(dev)
    dev.driver = None
    dev.driver_data = None


async def call_driver_probe(dev: Device, drv: Driver) -> int:
    """Run the probe; returns 0 or a negative errno, logging as the kernel does."""
    try:
        # call_driver_probe() is static with one caller: inlined into really_probe()
        with enter(drv.bus.probe_frames):
            await drv.probe(dev)
    except ErrnoError as e:
        ret = -e.errno
    else:
        return 0
    if ret == -EPROBE_DEFER:
        dev.printk(KERN_DEBUG, f"Driver {drv.name} requests probe deferral")
    elif ret in (-errno.ENODEV, -errno.ENXIO):
        dev.printk(KERN_DEBUG, f"probe with driver {drv.name} rejects match {ret}")
    else:
        dev.printk(KERN_ERR, f"probe with driver {drv.name} failed with error {ret}")
    return ret


async def really_probe(dev: Device, drv: Driver) -> int:
    """Returns 0 when bound, a *positive* errno when the probe failed (as the kernel does, so
    callers can tell probe failures from their own errors)."""
    ret = device_links_check_suppliers(dev)
    if ret:
        return ret
    if dev.devres:
        dev.printk(KERN_CRIT, "Resources present before probing")
        return -errno.EBUSY
    dev.driver = drv
    try:
        driver_sysfs_add(dev)
    except ErrnoError as e:
        # sysfs_failed: the links made so far go and dev->driver is reset, or the device
        # would keep a driver it was never bound to.
        dev.printk(KERN_ERR, "really_probe: driver_sysfs_add failed")
        await driver_sysfs_remove(dev)
        await device_unbind_cleanup(dev)
        return -e.errno
    with frame("really_probe"):
        ret = await call_driver_probe(dev, drv)
    if ret:
        await driver_sysfs_remove(dev)
        await device_unbind_cleanup(dev)
        return -ret
    driver_bound(dev)
    return 0


async def __driver_probe_device(drv: Driver, dev: Device) -> int:
    if dev.dead or not dev.registered:
        return -errno.ENODEV
    if dev.driver is not None:
        return -errno.EBUSY
    with frame("__driver_probe_device"):
        return await really_probe(dev, drv)


async def driver_probe_device(drv: Driver, dev: Device) -> int:
    """__driver_probe_device(), and a deferral puts the device on the deferred list."""
    deferred = dev.kernel.deferred_probe
    trigger_count = deferred.trigger_count
    with frame("driver_probe_device"):
        ret = await __driver_probe_device(drv, dev)
    if ret in (EPROBE_DEFER, -EPROBE_DEFER):
        deferred.add(dev)
        # A device bound while this probe ran: the trigger missed this device, so again.
        if trigger_count != deferred.trigger_count:
            deferred.trigger()
    return ret


async def device_driver_attach(drv: Driver, dev: Device) -> None:
    """Bind ``drv`` to ``dev`` for ``bind``; raises the errno the write should return."""
    async with dev.lock:
        ret = await __driver_probe_device(drv, dev)
    if ret > 0:
        ret = -ret
    if ret == -EPROBE_DEFER:
        ret = -errno.EAGAIN
    if ret:
        raise ErrnoError(-ret)


async def device_attach(dev: Device) -> bool:
    """Try every driver on the bus in turn (__device_attach()); True if one bound.

    A failed probe lets the next driver try its luck; an error before probing stops the walk
    and is raised.
    """
    async with dev.lock:
        if dev.driver is not None:
            return True
        assert dev.bus is not None
        for drv in list(dev.bus.drivers.values()):
            if not driver_match_device(drv, dev):
                continue
            with frame("__device_attach", "bus_for_each_drv", "__device_attach_driver"):
                ret = await driver_probe_device(drv, dev)
            if ret < 0:
                raise ErrnoError(-ret)
            if ret == 0:
                return True
        return False


async def driver_attach(drv: Driver) -> None:
    """Try the driver on every unbound device of its bus (__driver_attach())."""
    for dev in list(drv.bus.devices):
        if dev.driver is not None or not driver_match_device(drv, dev):
            continue
        async with dev.lock:
            with frame("driver_attach", "bus_for_each_dev", "__driver_attach"):
                await driver_probe_device(drv, dev)


async def __device_release_driver(dev: Device) -> None:
    drv = dev.driver
    if drv is None:
        return
    await driver_sysfs_remove(dev)
    with frame("device_remove"), enter(drv.bus.remove_frames):
        await drv.remove(dev)
    await dev.kernel.hold.reach("unbind_devres", dev)
    await device_unbind_cleanup(dev)
    drv.devices.remove(dev)
    kobject_uevent(dev.kernel, KOBJ_UNBIND, dev.devpath(), dev.subsystem_name(), dev.uevent_env())


async def device_release_driver(dev: Device) -> None:
    """Unbind whatever driver ``dev`` has (device_release_driver())."""
    with frame("device_release_driver_internal"):
        async with dev.lock:
            await __device_release_driver(dev)


async def device_driver_detach(dev: Device) -> None:
    await device_release_driver(dev)


async def driver_detach(drv: Driver) -> None:
    """Unbind ``drv`` from all its devices, newest first (driver_detach())."""
    while drv.devices:
        dev = drv.devices[-1]
        async with dev.lock:
            if dev.driver is drv:
                await __device_release_driver(dev)
            elif dev in drv.devices:
                drv.devices.remove(dev)
