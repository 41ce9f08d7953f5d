"""The order in which a device and a driver leave sysfs (drivers/base/core.c device_del(),
drivers/base/bus.c bus_remove_device() and bus_remove_driver()), seen from the driver's
remove(), which runs in the middle of both."""

from __future__ import annotations

from fakesys.kernel import Device, Kernel
from fakesys.kernel.core import device_add, device_unregister
from fakesys.kernel.driver import driver_register, driver_unregister
from fakesys.kernel.module import Module, load_module
from fakesys.kernel.platform import PlatformDevice, PlatformDriver


class WatchingDriver(PlatformDriver):
    """Records, at remove(), what is left of the device's and its own directory."""

    def __init__(self, kernel: Kernel, log: list[object], owner: Module | None = None) -> None:
        super().__init__("watch", kernel=kernel, owner=owner)
        self.log = log

    async def remove(self, dev: Device) -> None:
        assert dev.kn is not None and self.kn is not None
        self.log.append(("device dir", dev.kn.active, sorted(dev.kn.children)))
        self.log.append(("driver dir", sorted(self.kn.children)))
        self.log.append(("driver on its bus", self.name in self.bus.drivers))


async def booted(log: list[object]) -> Kernel:
    kernel = Kernel()
    await kernel.boot()
    kernel.uevent_listeners.append(lambda env: log.append(("uevent", dict(env)["ACTION"])))
    return kernel


async def test_device_del_empties_the_directory_before_the_driver_is_unbound() -> None:
    """device_del(): dpm_sysfs_remove() (power/), the uevent file and the attributes go, then
    bus_remove_device() removes the bus's dev_groups and the links and only then calls
    device_release_driver(): remove() sees a directory with nothing of the core's left,
    still there; the ``remove`` uevent comes after the ``unbind`` one."""
    log: list[object] = []
    kernel = await booted(log)
    await driver_register(WatchingDriver(kernel, log))
    dev = PlatformDevice(kernel, "watch", 0)
    await device_add(dev)
    assert dev.kn is not None
    assert sorted(dev.kn.children) == [
        "driver",
        "driver_override",
        "modalias",
        "power",
        "subsystem",
        "uevent",
    ]
    log.clear()
    await device_unregister(dev)
    assert log == [
        ("device dir", True, []),
        ("driver dir", ["bind", "uevent", "unbind"]),
        ("driver on its bus", True),
        ("uevent", "unbind"),
        ("uevent", "remove"),
    ]
    assert kernel.lookup("sys/devices/platform/watch.0") is None


async def test_bus_remove_driver_takes_bind_and_unbind_away_before_detaching() -> None:
    """bus_remove_driver(): remove_bind_files(), the drv_groups and ``uevent`` go and the
    driver leaves the bus's list before driver_detach(); the ``module`` link goes after, in
    module_remove_driver()."""
    log: list[object] = []
    kernel = await booted(log)

    async def init(mod: Module) -> None:
        await driver_register(WatchingDriver(kernel, log, mod))

    module = await load_module(kernel, "watchmod", init)
    dev = PlatformDevice(kernel, "watch", 0)
    await device_add(dev)
    log.clear()
    await driver_unregister(module.drivers[0])
    assert log == [
        ("device dir", True, ["driver_override", "modalias", "power", "subsystem", "uevent"]),
        ("driver dir", ["module"]),
        ("driver on its bus", False),
        ("uevent", "unbind"),
        ("uevent", "remove"),
    ]
    assert kernel.lookup("sys/bus/platform/drivers/watch") is None


async def test_parents_without_bus_or_class_send_no_uevents() -> None:
    """dev_uevent_filter(): ``platform`` and the PCI host bridge are plain devices; their
    add goes unannounced, as on a real boot."""
    kernel = Kernel()
    paths: list[str] = []
    kernel.uevent_listeners.append(lambda env: paths.append(dict(env)["DEVPATH"]))
    await kernel.boot()
    assert "/devices/platform" not in paths
    assert "/devices/pci0000:00" not in paths
    assert kernel.lookup("sys/devices/platform/uevent") is not None
