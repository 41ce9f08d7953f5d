"""cdev_modref_racy: a module reference taken without a lock (the 2002 driverfs race, Keith
Owens on LKML, "Re: Driverfs updates", July 2002).

In the style of its time, the driver counts its module itself instead of leaving it to the
character-device core (its file operations have no owner): open() looks its driver up and
then takes the driver's module reference with get_driver(). Nothing stops the module from
being unloaded in between (``hold/module_get``): the unload frees the module's memory, its
code included, and the open, asleep in that code, wakes up in freed text: a page-fault oops
on the instruction fetch, and the opener is killed. (Keith Owens' point: the code that takes
the reference must be built in. Built-in code reading ``drv->owner`` from the freed module
gets a KASAN vmalloc-out-of-bounds report, then the same fault on the unmapped page.)

The fix is cdev_modref_locked.py: ``diff cdev_modref_racy.py cdev_modref_locked.py``.
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
    ENXIO,
    Cdev,
    Device,
    Driver,
    ErrnoError,
    File,
    FileOperations,
    Inode,
    Kref,
    PlatformDevice,
    PlatformDriver,
    Struct,
    container_of,
    driver_register,
    driver_unregister,
    hold_point,
    kernel_function,
    kfree,
    kref_get,
    kref_init,
    kref_put,
    kzalloc,
    module_exit,
    module_init,
    module_put,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    try_module_get,
    wake_up,
)

THIS_MODULE = this_module()
DRIVER_NAME = "cdev_modref_racy"
modref_nodes = lifetime_class("modracy")


class Modref(Struct, var="priv"):
    """struct modref: one bound device, reference counted."""

    ref: Kref
    cdev: Cdev
    rx: LifetimeRx
    dev: Device
    gone: bool


@kernel_function
def get_driver(drv: Driver) -> Driver | None:
    """The 2002 get_driver(): pin the driver's module; None if it is going."""
    if drv.owner is not None and not try_module_get(drv.owner):
        return None
    return drv


def to_priv(file: File) -> Modref:
    priv = file.private_data
    assert isinstance(priv, Modref)
    return priv


def modref_free(ref: Kref) -> None:
    kfree(container_of(ref, Modref, "ref"))


async def modref_open(inode: Inode, file: File) -> None:
    priv = container_of(inode.i_cdev, Modref, "cdev")
    drv = modref_driver  # scan_driver_list()
    await hold_point("module_get", priv.rx.hw)
    if get_driver(drv) is None:
        raise ErrnoError(ENXIO)
    if priv.gone:
        module_put(drv.owner)
        raise ErrnoError(ENODEV)
    kref_get(priv.ref)
    file.private_data = priv


async def modref_read(file: File, count: int) -> bytes:
    priv = to_priv(file)
    await lifetime_rx_wait(priv.rx, file, lambda: priv.gone)
    if priv.gone:
        raise ErrnoError(ENODEV)
    return await lifetime_rx_copy(priv.rx, count)


async def modref_write(file: File, data: bytes) -> int:
    if to_priv(file).gone:
        raise ErrnoError(ENODEV)
    return len(data)


def modref_poll(file: File) -> int:
    priv = to_priv(file)
    if priv.gone:
        return POLLERR | POLLHUP
    return lifetime_rx_poll(priv.rx, file)


async def modref_release(inode: Inode, file: File) -> None:
    kref_put(to_priv(file).ref, modref_free)
    module_put(THIS_MODULE)


modref_fops = FileOperations(
    open=modref_open,
    read=modref_read,
    write=modref_write,
    poll=modref_poll,
    release=modref_release,
)


async def modref_probe(pdev: PlatformDevice) -> None:
    priv = kzalloc(Modref)
    kref_init(priv.ref)
    try:
        priv.dev = await lifetime_device_add(modref_nodes, pdev, priv.cdev, priv.rx, modref_fops)
    except ErrnoError:
        kref_put(priv.ref, modref_free)
        raise
    platform_set_drvdata(pdev, priv)


async def modref_remove(pdev: PlatformDevice) -> None:
    priv = platform_get_drvdata(pdev)
    assert isinstance(priv, Modref)
    await lifetime_device_del(modref_nodes, pdev, priv.cdev, priv.rx, priv.dev)
    priv.gone = True
    wake_up(priv.rx.wait)
    kref_put(priv.ref, modref_free)


modref_driver = PlatformDriver(name=DRIVER_NAME, probe=modref_probe, remove=modref_remove)


@module_init
async def modref_init() -> None:
    await driver_register(modref_driver)


@module_exit
async def modref_exit() -> None:
    await driver_unregister(modref_driver)
