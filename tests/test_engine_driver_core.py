"""The driver core without a mount: order of steps, errnos, devres, KASAN reports."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from fakesys import scenario
from fakesys.kernel import Device, Kernel
from fakesys.kernel.bus import bind_store, unbind_store
from fakesys.kernel.core import device_add, device_unregister
from fakesys.kernel.dd import device_release_driver
from fakesys.kernel.devres import DEVRES_HEADER, Devres, devm_add_action, devm_kzalloc
from fakesys.kernel.driver import driver_register
from fakesys.kernel.panic import TAINT_BAD_PAGE
from fakesys.kernel.pci import pci_bus, pci_rescan_bus, pci_stop_and_remove_bus_device
from fakesys.kernel.platform import PlatformDevice, PlatformDriver
from fakesys.kernel.slab import Struct, field_offset, u64
from fakesys.kernel.stacktrace import frame
from fakesys.kernfs import Caller, ErrnoError, open_file

DEFERRED_PROBE = Path(__file__).parent / "scenarios" / "deferred-probe.toml"


async def booted() -> Kernel:
    return await scenario.boot(scenario.load(None))


def platform_device(kernel: Kernel, name: str) -> Device:
    dev = kernel.buses["platform"].find_device_by_name(name)
    assert dev is not None
    return dev


async def test_bind_and_unbind_errnos() -> None:
    kernel = await booted()
    foo = kernel.buses["platform"].drivers["foo"]

    async def errno_of(store: object, name: bytes) -> int:
        assert callable(store)
        with pytest.raises(ErrnoError) as excinfo:
            await store(foo, name)
        return excinfo.value.errno

    assert await errno_of(bind_store, b"nosuch\n") == errno.ENODEV
    assert await errno_of(bind_store, b"foo.0\n") == errno.EBUSY
    assert await errno_of(unbind_store, b"foo.1") == errno.ENODEV
    assert await bind_store(foo, b"foo.1") == 5
    assert await unbind_store(foo, b"foo.1\n") == 6
    # the PCI device does not match a platform driver
    pci_drv = kernel.buses["pci"].drivers["fakegpu"]
    with pytest.raises(ErrnoError) as excinfo:
        await bind_store(pci_drv, b"foo.1")
    assert excinfo.value.errno == errno.ENODEV


class RecordingDriver(PlatformDriver):
    """A driver that records the order of the steps around it."""

    def __init__(self, kernel: Kernel, log: list[str]) -> None:
        super().__init__("rec", kernel=kernel)
        self.log = log

    async def probe(self, dev: Device) -> None:
        assert dev.kn is not None
        self.log.append(f"probe: driver link {'present' if dev.kn.lookup('driver') else 'absent'}")
        devm_add_action(dev, self.log.append, "devres 1")
        devm_add_action(dev, self.log.append, "devres 2")

    async def remove(self, dev: Device) -> None:
        assert dev.kn is not None
        self.log.append(f"remove: driver link {'present' if dev.kn.lookup('driver') else 'absent'}")


async def test_unbind_order_links_remove_devres_uevent() -> None:
    kernel = Kernel()
    await kernel.boot()
    log: list[str] = []
    kernel.uevent_listeners.append(lambda env: log.append(f"uevent {dict(env)['ACTION']}"))
    await driver_register(RecordingDriver(kernel, log))
    dev = PlatformDevice(kernel, "rec", 0)
    await device_add(dev)
    assert log[-3:] == ["uevent add", "probe: driver link present", "uevent bind"]
    log.clear()
    await device_release_driver(dev)
    assert log == [
        "remove: driver link absent",
        "devres 2",
        "devres 1",
        "uevent unbind",
    ]
    assert dev.driver is None


async def test_resources_present_before_probing_is_ebusy() -> None:
    kernel = await booted()
    dev = platform_device(kernel, "foo.1")
    dev.devres.append(Devres("stale", lambda: None))
    foo = kernel.buses["platform"].drivers["foo"]
    with pytest.raises(ErrnoError) as excinfo:
        await bind_store(foo, b"foo.1")
    assert excinfo.value.errno == errno.EBUSY
    # dev->driver is not set yet, so dev_driver_string() gives the bus name
    assert "platform foo.1: Resources present before probing" in kernel.log.text()


async def test_use_after_free_of_devm_memory_is_reported_at_the_field_and_taints() -> None:
    kernel = await booted()
    dev = platform_device(kernel, "foo.0")
    priv = dev.driver_data
    assert isinstance(priv, Struct) and not priv.freed
    memory = priv._memory
    assert memory is not None
    assert kernel.taint.mask == 0
    await device_release_driver(dev)
    assert priv.freed
    with frame("foo_release", module="foo"):
        assert priv.status == 0  # the freed memory reads as it was left, after the report
    assert kernel.taint.test(TAINT_BAD_PAGE)
    lines = kernel.log.text().splitlines()
    start = lines.index("=" * 66)
    report = lines[start:]
    assert report[1].startswith("BUG: KASAN: slab-use-after-free in foo_release+0x")
    assert report[1].endswith(" [foo]")
    # status is the second u32 of struct foo_priv, which sits behind the 40-byte devres header
    offset = DEVRES_HEADER + field_offset(type(priv), "status")
    assert offset == 44
    assert report[2].startswith(f"Read of size 4 at addr {memory.addr + offset:016x} by task ")
    assert any(line.startswith("CPU: 0 UID: 0 PID: ") and "Not tainted" in line for line in report)
    assert "Allocated by task 1:" in report
    allocated = report.index("Allocated by task 1:")
    assert any("devm_kmalloc+" in line for line in report[allocated : allocated + 8])
    assert any("foo_probe+" in line and "[foo]" in line for line in report[allocated:])
    freed = report.index("Freed by task 1:")
    assert any("release_nodes" in line for line in report[freed:])
    assert f"The buggy address belongs to the object at {memory.addr:016x}" in report
    assert " which belongs to the cache kmalloc-64 of size 64" in report
    assert "The buggy address is located 44 bytes inside of" in report
    memory_state = report.index("Memory state around the buggy address:")
    row = memory.addr  # the object starts a 128-byte row: offset 44 is its sixth granule
    assert report[memory_state + 3] == f">{row:016x}: fa" + " fb" * 7 + " fc" * 8
    assert report[memory_state + 4] == " " * (19 + 3 * 5) + "^"
    assert lines[-1] == "Disabling lock debugging due to kernel taint"
    # One report per boot unless multi-shot
    before = len(kernel.log.records())
    with frame("foo_write"):
        priv.ctrl = 2
    assert len(kernel.log.records()) == before
    kernel.kasan.multi_shot = True
    with frame("foo_write"):
        priv.ctrl = 3
    assert "Write of size 4" in kernel.log.text()


async def test_devm_memory_is_freed_after_remove() -> None:
    kernel = await booted()
    dev = platform_device(kernel, "foo.1")
    foo = kernel.buses["platform"].drivers["foo"]
    await bind_store(foo, b"foo.1")
    priv = dev.driver_data
    assert isinstance(priv, Struct)
    assert not priv.freed

    class Extra(Struct):
        words: list[int]
        more: u64

    other = devm_kzalloc(dev, Extra)
    assert other._memory is not None and other._memory.cache == "kmalloc-64"
    await unbind_store(foo, b"foo.1")
    assert priv.freed
    assert other.freed


async def test_taint_strings() -> None:
    kernel = Kernel()
    assert kernel.taint.print_tainted() == "Not tainted"
    kernel.taint.add(TAINT_BAD_PAGE)
    kernel.taint.add(9)
    assert kernel.taint.print_tainted() == "Tainted: G    B   W          "
    assert kernel.taint.print_tainted_verbose() == "[B]=BAD_PAGE, [W]=WARN"


async def test_pci_rescan_brings_a_removed_device_back_bound() -> None:
    kernel = await booted()
    pci = pci_bus(kernel)
    dev = pci.find_device_by_name("0000:00:02.0")
    assert dev is not None
    await pci_stop_and_remove_bus_device(dev)
    assert pci.find_device_by_name("0000:00:02.0") is None
    # the function stays in the bus's hardware list, for the rescan to find
    assert [slot.slot_name for slot in pci.slots] == ["0000:00:02.0"]
    assert dev.released
    await pci_rescan_bus(kernel)
    again = pci.find_device_by_name("0000:00:02.0")
    assert again is not None
    assert again is not dev
    assert again.driver is pci.drivers["fakegpu"]


async def read_text(kernel: Kernel, path: str) -> str:
    kn = kernel.lookup(path)
    assert kn is not None, path
    of = await open_file(kn, os.O_RDONLY, Caller(os.getpid()))
    try:
        return (await of.read(0, 4096)).decode()
    finally:
        await of.release()


async def test_deferred_probe_is_retried_when_another_device_binds(nursery: trio.Nursery) -> None:
    kernel = await scenario.boot(scenario.load(str(DEFERRED_PROBE)), nursery)
    platform = kernel.buses["platform"]
    sensor = platform_device(kernel, "sensor.0")
    deferred = "sys/kernel/debug/devices_deferred"
    # the supplier check defers before dev->driver is set: the reason names the bus
    assert await read_text(kernel, deferred) == (
        "sensor.0\tplatform: supplier pmic.0 not ready\nlate.0\t\n"
    )
    # a bind by hand does not wait: EAGAIN, and the device stays on the list
    with pytest.raises(ErrnoError) as excinfo:
        await bind_store(platform.drivers["sensor"], b"sensor.0")
    assert excinfo.value.errno == errno.EAGAIN
    late_tries = kernel.log.text().count("late late.0: Driver late requests probe deferral")
    await bind_store(platform.drivers["pmic"], b"pmic.0")
    await trio.testing.wait_all_tasks_blocked()
    assert sensor.driver is platform.drivers["sensor"]
    # the retry of late.0 deferred again: back on the pending list, probed once more
    assert await read_text(kernel, deferred) == "late.0\t\n"
    text = kernel.log.text()
    assert text.count("late late.0: Driver late requests probe deferral") == late_tries + 1
    assert "platform sensor.0: Retrying from deferred list" in text
    # and a device that goes away leaves the list
    await device_unregister(platform_device(kernel, "late.0"))
    assert await read_text(kernel, deferred) == ""
