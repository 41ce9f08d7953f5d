"""foo, fakegpu and fakeserial in the engine: the devices of the shipped scenarios."""

from __future__ import annotations

import errno

import trio
import trio.testing

from fakesys.kernel.slab import Struct

from .engine import CTL, booted, errno_of, kasan_reports, open_node, read, write

GPU = "sys/devices/pci0000:00/0000:00:02.0"


async def test_foo_keeps_devm_data_that_goes_with_the_binding(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    dev = kernel.buses["platform"].find_device_by_name("foo.0")
    assert dev is not None
    priv = dev.driver_data
    assert isinstance(priv, Struct) and not priv.freed
    await write(kernel, "sys/bus/platform/drivers/foo/unbind", "foo.0")
    assert priv.freed and dev.driver_data is None
    await write(kernel, "sys/bus/platform/drivers/foo/bind", "foo.0")
    assert isinstance(dev.driver_data, Struct) and not dev.driver_data.freed


async def test_fakegpu_has_a_drm_node_on_the_drm_major(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery, "gpu")
    assert await read(kernel, f"{GPU}/drm/card0/dev") == "226:0\n"
    uevent = await read(kernel, f"{GPU}/drm/card0/uevent")
    # drm_devnode() names the node and gives no mode: DEVNAME, no DEVMODE
    assert uevent.splitlines() == [
        "MAJOR=226", "MINOR=0", "DEVNAME=dri/card0", "DEVTYPE=drm_minor",
    ]  # fmt: skip
    assert kernel.lookup("dev/dri/card0") is not None


async def test_fakegpu_files_fail_with_enodev_once_unplugged(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery, "gpu")
    of = await open_node(kernel, "dri/card0")
    await write(kernel, f"{CTL}/devices/0000:00:02.0/feed", "vblank")
    assert await of.read(0, 64) == b"vblank"
    await write(kernel, f"{CTL}/devices/0000:00:02.0/hang", "1")  # its hang path dumps
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.lookup("sys/devices/virtual/devcoredump/devcd1") is not None
    await write(kernel, "sys/bus/pci/drivers/fakegpu/unbind", "0000:00:02.0")
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.lookup("dev/dri/card0") is None
    assert kernel.lookup("dev/dri") is None  # devtmpfs takes the empty directory away too
    # dev_coredump_put() ran from the devm action: the dump went with the binding, as Xe's
    assert kernel.lookup("sys/devices/virtual/devcoredump/devcd1") is None
    assert await errno_of(of.read(0, 64)) == errno.ENODEV
    await of.release()
    assert kasan_reports(kernel) == []


async def test_fakeserial_hangs_its_tty_up_when_the_adapter_goes(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery, "usb-hotplug")
    await write(kernel, "sys/bus/hotplug/new_device", "2")
    assert await read(kernel, "sys/devices/hotplug2/tty/ttyUSB1/dev") == "188:1\n"
    of = await open_node(kernel, "ttyUSB1")
    await write(kernel, f"{CTL}/devices/hotplug2/feed", "AT\r")
    assert await of.read(0, 16) == b"AT\r"
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await of.read(0, 16))

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    await write(kernel, "sys/bus/hotplug/del_device", "2")
    await trio.testing.wait_all_tasks_blocked()
    assert got == [b""]  # the blocked read ends at end of file: a hung-up tty
    assert await of.read(0, 16) == b""
    assert await errno_of(of.write(0, b"x")) == errno.EIO
    await of.release()
    assert kernel.lookup("dev/ttyUSB1") is None
    assert kasan_reports(kernel) == []
