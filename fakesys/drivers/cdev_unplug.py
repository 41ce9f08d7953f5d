"""cdev_unplug: a driver on the V4L2 unplug RFC ("v4l: v4l2-dev: Add infrastructure to protect
device unplug race", :mod:`.v4l2_dev`), with the RFC's open question answered: unplug wakes the
blocked operations.

Its file operations use device-managed resources (devm_kzalloc(): freed by devres after
remove()) inside enter/exit sections. remove() starts with video_device_unplug(), as the RFC's
rcar-vin patch does, which refuses new sections (ENODEV), wakes the readers blocked in one
(probe pointed the video device's ``queue`` at the queue they sleep on, and a woken reader
that sees the unplug leaves with ENODEV), and waits until every section has exited: only then
do the node and the interrupt go, and devres free the resources. The files' own state is
reference counted, so a close after the unbind is safe too.

The RFC as posted is cdev_unplug_rfc.py: ``diff cdev_unplug_rfc.py cdev_unplug.py``.
"""

from __future__ import annotations

from fakesys.drivers.lifetime import (
    POLLERR,
    POLLHUP,
    LifetimeRx,
    lifetime_class,
    lifetime_device_add,
    lifetime_device_del,
    lifetime_rx_copy,
    lifetime_rx_poll,
    lifetime_rx_wait,
)
from fakesys.drivers.v4l2_dev import (
    VideoDeviceUnplug,
    video_device_enter,
    video_device_exit,
    video_device_unplug,
)
from fakesys.linux import (
    ENODEV,
    Cdev,
    Device,
    ErrnoError,
    File,
    FileOperations,
    Inode,
    Kref,
    PlatformDevice,
    PlatformDriver,
    Ptr,
    Struct,
    container_of,
    devm_kzalloc,
    kfree,
    kref_get,
    kref_init,
    kref_put,
    kzalloc,
    module_platform_driver,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    u32,
)

THIS_MODULE = this_module()
unplug_nodes = lifetime_class("unplug")


class UnplugResources(Struct, name="unplug_resources", var="res"):
    """What the file operations use of the device: devm-managed, freed after remove()."""

    regs: u32
    frames: u32


class UnplugDev(Struct, name="unplug_dev", var="udev"):
    """struct unplug_dev: one bound device."""

    ref: Kref
    vdev: VideoDeviceUnplug
    cdev: Cdev
    rx: LifetimeRx
    dev: Device
    res: Ptr[UnplugResources]


def to_udev(file: File) -> UnplugDev:
    udev = file.private_data
    assert isinstance(udev, UnplugDev)
    return udev


def unplug_free(ref: Kref) -> None:
    kfree(container_of(ref, UnplugDev, "ref"))


async def unplug_open(inode: Inode, file: File) -> None:
    udev = container_of(inode.i_cdev, UnplugDev, "cdev")
    kref_get(udev.ref)
    file.private_data = udev


async def unplug_read(file: File, count: int) -> bytes:
    udev = to_udev(file)
    if not video_device_enter(udev.vdev):
        raise ErrnoError(ENODEV)
    try:
        udev.res.frames += 1
        await lifetime_rx_wait(udev.rx, file, lambda: udev.vdev.unplugged)
        if udev.vdev.unplugged:
            raise ErrnoError(ENODEV)
        return await lifetime_rx_copy(udev.rx, count)
    finally:
        video_device_exit(udev.vdev)


async def unplug_write(file: File, data: bytes) -> int:
    udev = to_udev(file)
    if not video_device_enter(udev.vdev):
        raise ErrnoError(ENODEV)
    try:
        udev.res.regs = len(data)
        return len(data)
    finally:
        video_device_exit(udev.vdev)


def unplug_poll(file: File) -> int:
    udev = to_udev(file)
    if udev.vdev.unplugged:
        return POLLERR | POLLHUP
    return lifetime_rx_poll(udev.rx, file)


async def unplug_release(inode: Inode, file: File) -> None:
    kref_put(to_udev(file).ref, unplug_free)


unplug_fops = FileOperations(
    owner=THIS_MODULE,
    open=unplug_open,
    read=unplug_read,
    write=unplug_write,
    poll=unplug_poll,
    release=unplug_release,
)


async def unplug_probe(pdev: PlatformDevice) -> None:
    udev = kzalloc(UnplugDev)
    kref_init(udev.ref)
    udev.res = devm_kzalloc(pdev, UnplugResources)
    udev.vdev.queue = udev.rx.wait  # where unplug wakes the blocked readers
    try:
        udev.dev = await lifetime_device_add(unplug_nodes, pdev, udev.cdev, udev.rx, unplug_fops)
    except ErrnoError:
        kref_put(udev.ref, unplug_free)
        raise
    platform_set_drvdata(pdev, udev)


async def unplug_remove(pdev: PlatformDevice) -> None:
    udev = platform_get_drvdata(pdev)
    assert isinstance(udev, UnplugDev)
    await video_device_unplug(udev.vdev)
    await lifetime_device_del(unplug_nodes, pdev, udev.cdev, udev.rx, udev.dev)
    kref_put(udev.ref, unplug_free)


unplug_driver = PlatformDriver(name="cdev_unplug", probe=unplug_probe, remove=unplug_remove)
module_platform_driver(unplug_driver)
