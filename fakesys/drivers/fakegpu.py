"""fakegpu: a PCI GPU with a DRM node, that dumps like Xe (drivers/gpu/drm/xe/xe_devcoredump.c).

Bound to a 1234:1111 device, it has a DRM primary node (``/dev/dri/card0``: the DRM major, 226,
``DEVTYPE=drm_minor``). Its device is reference counted by the open files, as a drm_device is
by its drm_files; after the device is unplugged (unbind, or ``remove``), drm_dev_enter() fails
and the files' calls return ENODEV, and the last close frees what is left. Reads return the
events the hardware sends (``feed``).

A ``coredump`` write (standing in for a GPU hang) takes a snapshot of the device and hands it
to dev_coredumpm_timeout() with a one-hour timeout, and probe registers
dev_coredump_put() as a devm action, so the dump goes when the driver unbinds, as Xe's does.
Module parameters: ``size`` of the dump (64 KiB), ``format`` (``text``), ``timeout`` (3600 s).
"""

from __future__ import annotations

from fakesys.drivers.dumpdata import DumpContent, dump_content
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
    GFP_KERNEL,
    HZ,
    Cdev,
    Device,
    ErrnoError,
    File,
    FileOperations,
    Inode,
    Kref,
    PciDevice,
    PciDeviceId,
    PciDriver,
    Struct,
    container_of,
    dev_coredump_put,
    dev_coredumpm_timeout,
    devm_add_action_or_reset,
    kfree,
    kref_get,
    kref_init,
    kref_put,
    kzalloc,
    module_param,
    module_pci_driver,
    pci_get_drvdata,
    pci_set_drvdata,
    this_module,
    wake_up,
)

THIS_MODULE = this_module()
DRIVER_NAME = "fakegpu"
DRM_MAJOR = 226
fakegpu_nodes = lifetime_class("dri/card", "drm", major=DRM_MAJOR)
dump_size = module_param("size", 65536)
dump_format = module_param("format", "text")
dump_timeout = module_param("timeout", 3600)


class FakegpuDevice(Struct, name="fakegpu_device", var="gdev"):
    """struct fakegpu_device: the drm_device of one GPU."""

    ref: Kref
    cdev: Cdev
    rx: LifetimeRx
    primary: Device
    unplugged: bool


class FakegpuSnapshot(Struct, name="fakegpu_devcoredump", var="coredump"):
    """What a dump is read from: a copy, taken at the hang."""

    content: DumpContent | None


def fakegpu_release(ref: Kref) -> None:
    kfree(container_of(ref, FakegpuDevice, "ref"))


def drm_dev_enter(gdev: FakegpuDevice) -> bool:
    return not gdev.unplugged


def to_gdev(file: File) -> FakegpuDevice:
    gdev = file.private_data
    assert isinstance(gdev, FakegpuDevice)
    return gdev


async def fakegpu_open(inode: Inode, file: File) -> None:
    gdev = container_of(inode.i_cdev, FakegpuDevice, "cdev")
    if not drm_dev_enter(gdev):
        raise ErrnoError(ENODEV)
    kref_get(gdev.ref)
    file.private_data = gdev


async def fakegpu_read(file: File, count: int) -> bytes:
    gdev = to_gdev(file)
    await lifetime_rx_wait(gdev.rx, file, lambda: gdev.unplugged)
    if not drm_dev_enter(gdev):
        raise ErrnoError(ENODEV)
    return await lifetime_rx_copy(gdev.rx, count)


def fakegpu_poll(file: File) -> int:
    gdev = to_gdev(file)
    if not drm_dev_enter(gdev):
        return POLLERR | POLLHUP
    return lifetime_rx_poll(gdev.rx, file)


async def fakegpu_postclose(inode: Inode, file: File) -> None:
    kref_put(to_gdev(file).ref, fakegpu_release)


fakegpu_fops = FileOperations(
    owner=THIS_MODULE,
    open=fakegpu_open,
    read=fakegpu_read,
    poll=fakegpu_poll,
    release=fakegpu_postclose,
)


def fakegpu_devcoredump_read(offset: int, count: int, data: object, datalen: int) -> bytes:
    coredump = data
    assert isinstance(coredump, FakegpuSnapshot)
    content = coredump.content
    return content.read(offset, count) if content is not None else b""


def fakegpu_devcoredump_free(data: object) -> None:
    assert isinstance(data, FakegpuSnapshot)
    kfree(data)


async def fakegpu_coredump(pdev: PciDevice) -> None:
    coredump = kzalloc(FakegpuSnapshot)
    coredump.content = dump_content(dump_size, dump_format, pdev, THIS_MODULE)
    await dev_coredumpm_timeout(
        pdev, THIS_MODULE, coredump, dump_size, GFP_KERNEL,
        fakegpu_devcoredump_read, fakegpu_devcoredump_free, dump_timeout * HZ,
    )  # fmt: skip


async def fakegpu_devcoredump_fini(data: object) -> None:
    assert isinstance(data, PciDevice)
    await dev_coredump_put(data)


async def fakegpu_probe(pdev: PciDevice) -> None:
    gdev = kzalloc(FakegpuDevice)
    kref_init(gdev.ref)
    try:
        gdev.primary = await lifetime_device_add(
            fakegpu_nodes, pdev, gdev.cdev, gdev.rx, fakegpu_fops, devtype="drm_minor"
        )
    except ErrnoError:
        kref_put(gdev.ref, fakegpu_release)
        raise
    pci_set_drvdata(pdev, gdev)
    devm_add_action_or_reset(pdev, fakegpu_devcoredump_fini, pdev)


async def fakegpu_remove(pdev: PciDevice) -> None:
    gdev = pci_get_drvdata(pdev)
    assert isinstance(gdev, FakegpuDevice)
    await lifetime_device_del(fakegpu_nodes, pdev, gdev.cdev, gdev.rx, gdev.primary)
    gdev.unplugged = True  # drm_dev_unplug()
    wake_up(gdev.rx.wait)
    kref_put(gdev.ref, fakegpu_release)


fakegpu_driver = PciDriver(
    name=DRIVER_NAME,
    id_table=[PciDeviceId(vendor=0x1234, device=0x1111)],
    probe=fakegpu_probe,
    remove=fakegpu_remove,
    coredump=fakegpu_coredump,
)
module_pci_driver(fakegpu_driver)
