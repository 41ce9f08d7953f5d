"""cdev_refcounted: the fix of cdev_devm (the devres article, "When does the use of the
devres API harm?").

The driver's data is reference counted instead of devm-allocated: the driver holds one
reference from probe to remove, and every open file one until its close. remove() marks the
device gone and wakes the readers; reads and writes on files still open then fail with
ENODEV, and the last close frees the data. ``diff cdev_devm.py cdev_refcounted.py`` is the fix.
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
    Struct,
    container_of,
    kfree,
    kref_get,
    kref_init,
    kref_put,
    kzalloc,
    module_platform_driver,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    u64,
    wake_up,
)

THIS_MODULE = this_module()
DRIVER_NAME = "cdev_refcounted"
chardev_nodes = lifetime_class("refcounted")


class Chardev(Struct, var="priv"):
    """struct chardev: one bound device."""

    ref: Kref
    cdev: Cdev
    rx: LifetimeRx
    dev: Device
    gone: bool
    open_count: int
    tx_bytes: u64


def to_priv(file: File) -> Chardev:
    priv = file.private_data
    assert isinstance(priv, Chardev)
    return priv


async def chardev_open(inode: Inode, file: File) -> None:
    priv = container_of(inode.i_cdev, Chardev, "cdev")
    kref_get(priv.ref)
    priv.open_count += 1
    file.private_data = priv


async def chardev_read(file: File, count: int) -> bytes:
    priv = to_priv(file)
    if priv.gone:
        raise ErrnoError(ENODEV)
    await lifetime_rx_wait(priv.rx, file, lambda: priv.gone)
    if priv.gone:
        raise ErrnoError(ENODEV)
    return await lifetime_rx_copy(priv.rx, count)


async def chardev_write(file: File, data: bytes) -> int:
    priv = to_priv(file)
    if priv.gone:
        raise ErrnoError(ENODEV)
    priv.tx_bytes += len(data)
    return len(data)


def chardev_poll(file: File) -> int:
    priv = to_priv(file)
    if priv.gone:
        return POLLERR | POLLHUP
    return lifetime_rx_poll(priv.rx, file)


def chardev_free(ref: Kref) -> None:
    kfree(container_of(ref, Chardev, "ref"))


async def chardev_release(inode: Inode, file: File) -> None:
    priv = to_priv(file)
    priv.open_count -= 1
    kref_put(priv.ref, chardev_free)


chardev_fops = FileOperations(
    owner=THIS_MODULE,
    open=chardev_open,
    read=chardev_read,
    write=chardev_write,
    poll=chardev_poll,
    release=chardev_release,
)


async def chardev_probe(pdev: PlatformDevice) -> None:
    priv = kzalloc(Chardev)
    kref_init(priv.ref)
    try:
        priv.dev = await lifetime_device_add(chardev_nodes, pdev, priv.cdev, priv.rx, chardev_fops)
    except ErrnoError:
        kref_put(priv.ref, chardev_free)
        raise
    platform_set_drvdata(pdev, priv)


async def chardev_remove(pdev: PlatformDevice) -> None:
    priv = platform_get_drvdata(pdev)
    assert isinstance(priv, Chardev)
    await lifetime_device_del(chardev_nodes, pdev, priv.cdev, priv.rx, priv.dev)
    priv.gone = True
    wake_up(priv.rx.wait)
    kref_put(priv.ref, chardev_free)  # the open files keep it until their close


chardev_driver = PlatformDriver(name=DRIVER_NAME, probe=chardev_probe, remove=chardev_remove)
module_platform_driver(chardev_driver)
