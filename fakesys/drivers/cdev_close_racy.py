"""cdev_close_racy: a module whose count is dropped inside its own close (the 2002 driverfs
thread, Keith Owens on LKML, "Re: Driverfs updates", July 2002: "There is a very small race on
close where the module does MOD_DEC_USE_COUNT() which can take the count to 0 but the close
routine has not returned from the module yet").

In the style of its time, the driver counts its module itself: open() takes a reference with
try_module_get(THIS_MODULE), and close drops it with module_put() as its last act. But the
close routine has not returned yet (``hold/close_return``): an rmmod in that window finds the
count at zero and unloads the module, text and all, and the close returns into freed text: a
page-fault oops, and the closing process is killed.

The fix is cdev_close_held.py, the caller holding the count around close:
``diff cdev_close_racy.py cdev_close_held.py``.
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
    DEFINE_HOLD_POINT,
    ENODEV,
    ENXIO,
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
    hold_point,
    kfree,
    kref_get,
    kref_init,
    kref_put,
    kzalloc,
    module_platform_driver,
    module_put,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    try_module_get,
    wake_up,
)

THIS_MODULE = this_module()
DRIVER_NAME = "cdev_close_racy"
close_nodes = lifetime_class("closeracy")
DEFINE_HOLD_POINT("close_return", "in a cdev_close driver's release(), after its module_put()")


class CloseDev(Struct, var="cdev_priv"):
    """struct close_dev: one bound device, reference counted by its open files."""

    ref: Kref
    cdev: Cdev
    rx: LifetimeRx
    dev: Device
    gone: bool


def to_priv(file: File) -> CloseDev:
    priv = file.private_data
    assert isinstance(priv, CloseDev)
    return priv


def close_free(ref: Kref) -> None:
    kfree(container_of(ref, CloseDev, "ref"))


async def close_open(inode: Inode, file: File) -> None:
    priv = container_of(inode.i_cdev, CloseDev, "cdev")
    if not try_module_get(THIS_MODULE):
        raise ErrnoError(ENXIO)
    if priv.gone:
        module_put(THIS_MODULE)
        raise ErrnoError(ENODEV)
    kref_get(priv.ref)
    file.private_data = priv


async def close_read(file: File, count: int) -> bytes:
    priv = to_priv(file)
    await lifetime_rx_wait(priv.rx, file, lambda: priv.gone)
    if priv.gone:
        raise ErrnoError(ENODEV)
    return await lifetime_rx_copy(priv.rx, count)


def close_poll(file: File) -> int:
    priv = to_priv(file)
    if priv.gone:
        return POLLERR | POLLHUP
    return lifetime_rx_poll(priv.rx, file)


async def close_release(inode: Inode, file: File) -> None:
    priv = to_priv(file)
    hw = priv.rx.hw
    kref_put(priv.ref, close_free)
    module_put(THIS_MODULE)
    await hold_point("close_return", hw)  # still in the module's code


close_fops = FileOperations(
    open=close_open,
    read=close_read,
    poll=close_poll,
    release=close_release,
)


async def close_probe(pdev: PlatformDevice) -> None:
    priv = kzalloc(CloseDev)
    kref_init(priv.ref)
    try:
        priv.dev = await lifetime_device_add(close_nodes, pdev, priv.cdev, priv.rx, close_fops)
    except ErrnoError:
        kref_put(priv.ref, close_free)
        raise
    platform_set_drvdata(pdev, priv)


async def close_remove(pdev: PlatformDevice) -> None:
    priv = platform_get_drvdata(pdev)
    assert isinstance(priv, CloseDev)
    await lifetime_device_del(close_nodes, pdev, priv.cdev, priv.rx, priv.dev)
    priv.gone = True
    wake_up(priv.rx.wait)
    kref_put(priv.ref, close_free)


close_driver = PlatformDriver(name=DRIVER_NAME, probe=close_probe, remove=close_remove)
module_platform_driver(close_driver)
