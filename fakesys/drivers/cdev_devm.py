"""cdev_devm: a character device whose private data is devm-allocated (the devres article,
"When does the use of the devres API harm?", buggy).

probe allocates the driver's data with devm_kzalloc(), so the driver core frees it right
after remove(), in devres_release_all(). A file that is still open keeps pointing at it: the
next read, write, poll or close touches freed memory. remove() does mark the device gone and
wake the readers, but the mark is in the memory about to be freed; a reader woken by it, or
any later call, reads it from there (KASAN), finds it set, and fails with ENODEV, as the
buggy kernel would as long as nothing reused that memory.

The fix is cdev_refcounted.py: ``diff cdev_devm.py cdev_refcounted.py``.
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
    PlatformDevice,
    PlatformDriver,
    Struct,
    container_of,
    devm_kzalloc,
    module_platform_driver,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    u64,
    wake_up,
)

THIS_MODULE = this_module()
DRIVER_NAME = "cdev_devm"
chardev_nodes = lifetime_class("devm")


class Chardev(Struct, var="priv"):
    """struct chardev: one bound device."""

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


async def chardev_release(inode: Inode, file: File) -> None:
    priv = to_priv(file)
    priv.open_count -= 1


chardev_fops = FileOperations(
    owner=THIS_MODULE,
    open=chardev_open,
    read=chardev_read,
    write=chardev_write,
    poll=chardev_poll,
    release=chardev_release,
)


async def chardev_probe(pdev: PlatformDevice) -> None:
    priv = devm_kzalloc(pdev, Chardev)
    priv.dev = await lifetime_device_add(chardev_nodes, pdev, priv.cdev, priv.rx, chardev_fops)
    platform_set_drvdata(pdev, priv)


async def chardev_remove(pdev: PlatformDevice) -> None:
    priv = platform_get_drvdata(pdev)
    assert isinstance(priv, Chardev)
    await lifetime_device_del(chardev_nodes, pdev, priv.cdev, priv.rx, priv.dev)
    priv.gone = True
    wake_up(priv.rx.wait)
    # devres frees priv once this returns, whoever still points at it.


chardev_driver = PlatformDriver(name=DRIVER_NAME, probe=chardev_probe, remove=chardev_remove)
module_platform_driver(chardev_driver)
