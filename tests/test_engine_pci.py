"""The PCI bus without a mount: configuration space, the attribute set the kernel's rules give
(drivers/pci/pci-sysfs.c), the stores' errnos, new_id/remove_id, power/, the root bus."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from fakesys import scenario
from fakesys.kernel import Kernel
from fakesys.kernel.dd import device_release_driver
from fakesys.kernel.pci import (
    PciBar,
    PciDevice,
    PciSlot,
    pci_bus,
    pci_rescan_bus,
    pci_stop_and_remove_bus_device,
)
from fakesys.kernfs import (
    PAGE_SIZE,
    Caller,
    ErrnoError,
    KernfsNode,
    OpenFile,
    current_caller,
    open_file,
)

GPU = "sys/devices/pci0000:00/0000:00:02.0"
DRIVER = "sys/bus/pci/drivers/fakegpu"


async def booted() -> Kernel:
    return await scenario.boot(scenario.load(None))


async def add_function(kernel: Kernel, slot: PciSlot) -> PciDevice:
    pci_bus(kernel).slots.append(slot)
    await pci_rescan_bus(kernel)
    dev = pci_bus(kernel).find_device_by_name(slot.slot_name)
    assert isinstance(dev, PciDevice)
    return dev


def node(kernel: Kernel, path: str) -> KernfsNode:
    kn = kernel.lookup(path)
    assert kn is not None, path
    return kn


T = TypeVar("T")


async def opened(
    kernel: Kernel, path: str, flags: int, uid: int, io: Callable[[OpenFile], Awaitable[T]]
) -> T:
    """One open, ``io`` on it, close; as user ``uid``, whom the FUSE layer names as the
    caller of a handle's I/O."""
    caller = Caller(os.getpid(), uid)
    token = current_caller.set(caller)
    try:
        of = await open_file(node(kernel, path), flags, caller)
        try:
            return await io(of)
        finally:
            await of.release()
    finally:
        current_caller.reset(token)


async def read(kernel: Kernel, path: str, uid: int = 0, size: int = PAGE_SIZE) -> bytes:
    return await opened(kernel, path, os.O_RDONLY, uid, lambda of: of.read(0, size))


async def write(kernel: Kernel, path: str, data: bytes, uid: int = 0) -> int:
    return await opened(kernel, path, os.O_WRONLY, uid, lambda of: of.write(0, data))


async def write_errno(kernel: Kernel, path: str, data: bytes, uid: int = 0) -> int:
    with pytest.raises(ErrnoError) as excinfo:
        await write(kernel, path, data, uid)
    return excinfo.value.errno


def capabilities(config: bytes) -> list[tuple[int, int]]:
    """(offset, id) of each capability, walked from 0x34 as pci_find_capability() does."""
    found: list[tuple[int, int]] = []
    offset = config[0x34]
    while offset and len(found) < 48:
        assert offset >= 0x40 and offset % 4 == 0, hex(offset)
        found.append((offset, config[offset]))
        offset = config[offset + 1]
    assert offset == 0, "the list must end"
    return found


async def test_config_space_agrees_with_itself() -> None:
    kernel = await booted()
    config = await read(kernel, f"{GPU}/config")
    assert len(config) == 4096  # pci_cfg_space_size(): a PCI Express function
    # the status register's capability bit, and the list it announces
    assert struct.unpack_from("<H", config, 0x06)[0] & 0x10
    caps = capabilities(config)
    assert [cap for _, cap in caps] == [0x01, 0x05, 0x10]  # PM, MSI, PCI Express
    exp = {cap: offset for offset, cap in caps}[0x10]
    flags = struct.unpack_from("<H", config, exp + 2)[0]
    assert (flags & 0xF, flags >> 4 & 0xF) == (2, 0x9)  # version 2, integrated endpoint
    pm = {cap: offset for offset, cap in caps}[0x01]
    assert struct.unpack_from("<H", config, pm + 4)[0] & 0x3 == 0  # in D0, as power_state
    # the extended space has no capability: the header at 0x100 is empty
    assert config[0x100:0x104] == bytes(4)
    # each BAR decodes the range the resource file shows, with the BAR's own flag bits
    lines = (await read(kernel, f"{GPU}/resource")).decode().splitlines()
    assert len(lines) == 7
    for i, line in enumerate(lines[:6]):
        start, end, flags = (int(x, 16) for x in line.split())
        bar = struct.unpack_from("<I", config, 0x10 + 4 * i)[0]
        if start:
            assert bar & ~0xF == start
            assert bar & 0xF == flags & 0xF
            assert end - start + 1 == (1 << (end - start + 1).bit_length() - 1)
        else:
            assert bar == 0
    # the vendor and the rest of the header, as the attributes show them
    assert config[0:4] == bytes.fromhex("34121111")
    assert await read(kernel, f"{GPU}/class") == b"0x030000\n"
    assert config[0x3C:0x3E] == bytes([11, 1])  # interrupt line 11, pin INTA#


async def test_conventional_function_and_64_bit_bar() -> None:
    kernel = await booted()
    slot = PciSlot(
        "0000:00:03.0",
        0x8086,
        0x1234,
        class_code=0x020000,
        bars=[PciBar(0x4000000000, 0x80000), PciBar(0xC000, 0x20, io=True)],
        pcie=False,
    )
    dev = await add_function(kernel, slot)
    path = "sys/devices/pci0000:00/0000:00:03.0"
    config = await read(kernel, f"{path}/config")
    assert len(config) == 256 and node(kernel, f"{path}/config").size == 256
    assert [cap for _, cap in capabilities(config)] == [0x01, 0x05]
    # BAR0 is 64-bit: two registers, and resource 1 empty; the I/O BAR is register 2
    assert struct.unpack_from("<Q", config, 0x10)[0] == 0x4000000000 | 0x4
    assert struct.unpack_from("<I", config, 0x18)[0] == 0xC000 | 0x1
    lines = (await read(kernel, f"{path}/resource")).decode().splitlines()
    assert lines[0] == "0x0000004000000000 0x000000400007ffff 0x0000000000140204"
    assert lines[1] == "0x0000000000000000 0x0000000000000000 0x0000000000000000"
    assert lines[2] == "0x000000000000c000 0x000000000000c01f 0x0000000000040101"
    names = set(node(kernel, path).children)
    assert {"resource0", "resource2"} <= names
    assert not names & {"resource1", "resource0_wc", "boot_vga", "current_link_speed"}
    # an I/O BAR's file takes port accesses of 1, 2 or 4 bytes
    assert await read(kernel, f"{path}/resource2", size=4) == bytes(4)
    with pytest.raises(ErrnoError) as excinfo:
        await read(kernel, f"{path}/resource2", size=3)
    assert excinfo.value.errno == errno.EINVAL
    # a memory BAR's file is for mmap: read gives EIO (sysfs_kf_bin_read())
    with pytest.raises(ErrnoError) as excinfo:
        await read(kernel, f"{path}/resource0")
    assert excinfo.value.errno == errno.EIO
    assert node(kernel, f"{path}/resource0").size == 0x80000
    assert dev.cfg_size == 256


async def test_multi_function_bit_follows_the_siblings() -> None:
    kernel = await booted()
    assert (await read(kernel, f"{GPU}/config"))[0x0E] == 0x00
    await add_function(kernel, PciSlot("0000:00:02.1", 0x1234, 0x2222, class_code=0x040300))
    assert (await read(kernel, f"{GPU}/config"))[0x0E] == 0x80
    assert (await read(kernel, "sys/devices/pci0000:00/0000:00:02.1/config"))[0x0E] == 0x80


def expected_names(dev: PciDevice) -> set[str]:
    """What pci-sysfs.c, probe.c and the driver core give a function: pci_dev_attrs (with
    CONFIG_NUMA, CONFIG_PM and CONFIG_ACPI, without CONFIG_OF), config, the hot-plug pair,
    boot_vga for a VGA function, the PCIe link attributes for a PCI Express one, link/ of
    CONFIG_PCIEASPM, resourceN per BAR with resourceN_wc for a prefetchable one, and the
    driver core's uevent, subsystem, power/ and driver."""
    names = {
        "power_state", "resource", "vendor", "device", "subsystem_vendor",
        "subsystem_device", "revision", "class", "irq", "local_cpus", "local_cpulist",
        "modalias", "numa_node", "dma_mask_bits", "consistent_dma_mask_bits", "enable",
        "broken_parity_status", "msi_bus", "d3cold_allowed", "driver_override",
        "ari_enabled", "config", "remove", "rescan", "link", "uevent", "subsystem", "power",
    }  # fmt: skip
    if dev.slot.class_code >> 8 == 0x0300:
        names.add("boot_vga")
    if dev.slot.pcie:
        names |= {"current_link_speed", "current_link_width", "max_link_width", "max_link_speed"}
    for i, bar in enumerate(dev.resources[:6]):
        if bar is not None:
            names.add(f"resource{i}")
            if bar.prefetch:
                names.add(f"resource{i}_wc")
    if dev.driver is not None:
        names.add("driver")
        if dev.driver.has_coredump:
            names.add("coredump")
        # the class devices its driver made (fakegpu's DRM node) are in a glue directory
        # named after their class (get_device_parent())
        driver_data = dev.driver_data
        primary = getattr(driver_data, "primary", None)
        if primary is not None and primary.cls is not None:
            names.add(primary.cls.name)
    return names


async def test_attribute_set_follows_the_kernels_visibility_rules() -> None:
    kernel = await booted()
    gpu = pci_bus(kernel).find_device_by_name("0000:00:02.0")
    assert isinstance(gpu, PciDevice)
    assert set(node(kernel, GPU).children) == expected_names(gpu)
    audio = await add_function(
        kernel, PciSlot("0000:00:1f.3", 0x8086, 0x51C8, class_code=0x040300, pcie=False)
    )
    assert set(node(kernel, "sys/devices/pci0000:00/0000:00:1f.3").children) == expected_names(
        audio
    )
    modes = {name: kn.mode for name, kn in node(kernel, GPU).children.items()}
    for name in ("broken_parity_status", "d3cold_allowed", "enable", "msi_bus", "numa_node"):
        assert modes[name] == 0o644, name  # DEVICE_ATTR_RW
    for name in ("ari_enabled", "boot_vga", "current_link_speed", "power_state", "irq"):
        assert modes[name] == 0o444, name
    assert (modes["remove"], modes["rescan"], modes["resource0"]) == (0o220, 0o200, 0o600)
    assert node(kernel, f"{GPU}/link").children == {}


async def test_values_of_an_integrated_endpoint() -> None:
    kernel = await booted()
    values = {
        "current_link_speed": b"Unknown\n",
        "current_link_width": b"0\n",
        "max_link_speed": b"Unknown\n",
        "max_link_width": b"0\n",
        "ari_enabled": b"0\n",
        "d3cold_allowed": b"1\n",
        "power_state": b"D0\n",
        "boot_vga": b"1\n",
        "enable": b"1\n",
        "dma_mask_bits": b"64\n",
        "numa_node": b"-1\n",
        "msi_bus": b"1\n",
    }
    for name, value in values.items():
        assert await read(kernel, f"{GPU}/{name}") == value, name
    # the first 64 bytes only, without CAP_SYS_ADMIN (pci_read_config())
    assert len(await read(kernel, f"{GPU}/config", uid=1000)) == 64


async def test_a_bound_driver_has_enabled_the_function_and_set_bus_mastering() -> None:
    kernel = await booted()
    gpu = pci_bus(kernel).find_device_by_name("0000:00:02.0")
    assert gpu is not None
    command = struct.unpack_from("<H", await read(kernel, f"{GPU}/config"), 4)[0]
    assert command == 0x0006  # memory decoding and bus mastering
    await device_release_driver(gpu)
    assert await read(kernel, f"{GPU}/enable") == b"0\n"
    command = struct.unpack_from("<H", await read(kernel, f"{GPU}/config"), 4)[0]
    assert command == 0x0002  # pci_disable_device() drops bus mastering
    assert await read(kernel, f"{GPU}/dma_mask_bits") == b"64\n"  # the mask stays


async def test_enable_store() -> None:
    kernel = await booted()
    assert await write_errno(kernel, f"{GPU}/enable", b"0", uid=1000) == errno.EPERM
    assert await write_errno(kernel, f"{GPU}/enable", b"1") == errno.EBUSY  # a driver has it
    gpu = pci_bus(kernel).find_device_by_name("0000:00:02.0")
    assert gpu is not None
    await device_release_driver(gpu)
    assert await write_errno(kernel, f"{GPU}/enable", b"x") == errno.EINVAL
    assert await write_errno(kernel, f"{GPU}/enable", b"0") == errno.EIO  # not enabled
    assert await write(kernel, f"{GPU}/enable", b"1\n") == 2
    assert await write(kernel, f"{GPU}/enable", b"1\n") == 2
    assert await read(kernel, f"{GPU}/enable") == b"2\n"  # enable_cnt counts
    assert await write(kernel, f"{GPU}/enable", b"0") == 1
    assert await read(kernel, f"{GPU}/enable") == b"1\n"


async def test_numa_node_store_taints_and_alerts() -> None:
    kernel = await booted()
    path = f"{GPU}/numa_node"
    assert await write_errno(kernel, path, b"0", uid=1000) == errno.EPERM
    for bad in (b"x", b"-2", b"1024", b"1"):  # junk, < -1, >= MAX_NUMNODES, not online
        assert await write_errno(kernel, path, bad) == errno.EINVAL, bad
    assert await write(kernel, path, b"-1") == 2  # unchanged: no taint
    assert kernel.taint.mask == 0
    assert await write(kernel, path, b"0\n") == 2
    assert await read(kernel, path) == b"0\n"
    assert kernel.taint.test(11)  # TAINT_FIRMWARE_WORKAROUND, 'I'
    record = kernel.log.records()[-1]
    assert record.level == 1  # pci_alert()
    assert record.text == (
        "fakegpu 0000:00:02.0: [Firmware Bug]: Overriding NUMA node to 0.  "
        "Contact your vendor for updates."
    )


async def test_msi_bus_broken_parity_and_d3cold_stores() -> None:
    kernel = await booted()
    assert await write_errno(kernel, f"{GPU}/msi_bus", b"0", uid=1000) == errno.EPERM
    assert await write(kernel, f"{GPU}/msi_bus", b"0") == 1
    assert await read(kernel, f"{GPU}/msi_bus") == b"0\n"
    assert kernel.log.records()[-1].text == (
        "fakegpu 0000:00:02.0: MSI/MSI-X disallowed for future drivers"
    )
    for name in ("broken_parity_status", "d3cold_allowed"):
        assert await write_errno(kernel, f"{GPU}/{name}", b"yes") == errno.EINVAL
        assert await write(kernel, f"{GPU}/{name}", b"7") == 1
        assert await read(kernel, f"{GPU}/{name}") == b"1\n"  # !!val
        assert await write(kernel, f"{GPU}/{name}", b"0x0") == 3
        assert await read(kernel, f"{GPU}/{name}") == b"0\n"


async def test_new_id_and_remove_id() -> None:
    kernel = await booted()
    other = await add_function(kernel, PciSlot("0000:00:04.0", 0x1234, 0x9999, class_code=0x30000))
    assert other.driver is None
    assert await write_errno(kernel, f"{DRIVER}/new_id", b"1234") == errno.EINVAL
    assert await write_errno(kernel, f"{DRIVER}/new_id", b"1234 1111") == errno.EEXIST
    # driver_data must be that of an id_table entry
    assert await write_errno(kernel, f"{DRIVER}/new_id", b"1234 9999 0 0 0 0 5") == errno.EINVAL
    assert await write(kernel, f"{DRIVER}/new_id", b"1234 9999\n") == 10
    assert other.driver is pci_bus(kernel).drivers["fakegpu"]  # pci_add_dynid() attaches
    assert await write_errno(kernel, f"{DRIVER}/new_id", b"0x1234 0x9999") == errno.EEXIST
    assert await write_errno(kernel, f"{DRIVER}/remove_id", b"1234") == errno.EINVAL
    assert await write_errno(kernel, f"{DRIVER}/remove_id", b"1234 7777") == errno.ENODEV
    assert await write(kernel, f"{DRIVER}/remove_id", b"1234 9999") == 9
    assert other.driver is not None  # removing the ID unbinds nothing


async def test_bus_files_and_the_root_bus() -> None:
    kernel = await booted()
    bus = node(kernel, "sys/bus/pci")
    assert {n for n, kn in bus.children.items() if kn.ops is not None or n == "slots"} == {
        "drivers_autoprobe",
        "drivers_probe",
        "rescan",
        "resource_alignment",
        "slots",
        "uevent",
    }
    assert node(kernel, "sys/bus/pci/slots").children == {}
    path = "sys/bus/pci/resource_alignment"
    assert node(kernel, path).mode == 0o644
    assert await read(kernel, path) == b""
    assert await write(kernel, path, b"4096@0000:00:02.0\n") == 18
    assert await read(kernel, path) == b"4096@0000:00:02.0\n"
    assert await write(kernel, path, b"\n") == 1
    assert await read(kernel, path) == b""
    assert await write_errno(kernel, path, b"x" * (PAGE_SIZE - 1)) == errno.EINVAL
    root_bus = "sys/devices/pci0000:00/pci_bus/0000:00"
    assert sorted(node(kernel, root_bus).children) == [
        "cpuaffinity",
        "cpulistaffinity",
        "device",
        "power",
        "rescan",
        "subsystem",
        "uevent",
    ]
    assert node(kernel, "sys/class/pci_bus/0000:00").link_target() == (
        "../../devices/pci0000:00/pci_bus/0000:00"
    )
    assert node(kernel, f"{root_bus}/device").link_target() == "../../../pci0000:00"
    assert await read(kernel, f"{root_bus}/uevent") == b""
    # the root bus's rescan finds a removed function again
    gpu = pci_bus(kernel).find_device_by_name("0000:00:02.0")
    assert gpu is not None
    await pci_stop_and_remove_bus_device(gpu)
    assert kernel.lookup(GPU) is None
    assert await write(kernel, f"{root_bus}/rescan", b"1") == 1
    assert kernel.lookup(GPU) is not None


async def test_boot_vga_is_the_first_vga_function() -> None:
    kernel = await booted()
    await add_function(kernel, PciSlot("0000:00:05.0", 0x1AF4, 0x1050, class_code=0x030000))
    assert await read(kernel, f"{GPU}/boot_vga") == b"1\n"
    assert await read(kernel, "sys/devices/pci0000:00/0000:00:05.0/boot_vga") == b"0\n"


async def test_power_group_of_a_function_and_of_the_host_bridge() -> None:
    """pci_pm_init() forbids runtime PM, sets the function active and enables it: ``on``,
    ``active``, active time counted from then on the engine clock. The host bridge and the
    root bus are left as the driver core leaves a device."""
    kernel = await booted()
    power = f"{GPU}/power"
    assert await read(kernel, f"{power}/control") == b"on\n"
    assert await read(kernel, f"{power}/runtime_status") == b"active\n"
    before = int(await read(kernel, f"{power}/runtime_active_time"))
    kernel.clock.advance(3)
    after = int(await read(kernel, f"{power}/runtime_active_time"))
    assert after - before >= 3000
    assert await read(kernel, f"{power}/runtime_suspended_time") == b"0\n"
    assert await write_errno(kernel, f"{power}/control", b"off") == errno.EINVAL
    assert await write(kernel, f"{power}/control", b"auto\n") == 5
    assert await read(kernel, f"{power}/control") == b"auto\n"
    for parent in ("sys/devices/pci0000:00", "sys/devices/pci0000:00/pci_bus/0000:00"):
        assert await read(kernel, f"{parent}/power/control") == b"auto\n"
        assert await read(kernel, f"{parent}/power/runtime_status") == b"unsupported\n"
        assert await read(kernel, f"{parent}/power/runtime_active_time") == b"0\n"
    assert sorted(node(kernel, power).children) == [
        "autosuspend_delay_ms",
        "control",
        "runtime_active_time",
        "runtime_status",
        "runtime_suspended_time",
    ]


async def test_resource_files_come_after_the_add_uevent_and_go_before_device_del() -> None:
    """pci_bus_add_device() creates them after device_add() and before device_attach();
    pci_stop_dev() removes them after unbinding, before pci_destroy_dev()."""
    kernel = await booted()
    seen: list[tuple[str, bool]] = []

    def listener(env: list[tuple[str, str]]) -> None:
        variables = dict(env)
        if variables["DEVPATH"].endswith("0000:00:06.0"):
            present = kernel.lookup("sys/devices/pci0000:00/0000:00:06.0/resource0") is not None
            seen.append((variables["ACTION"], present))

    kernel.uevent_listeners.append(listener)
    slot = PciSlot(
        "0000:00:06.0", 0x1234, 0x1111, class_code=0x030000, bars=[PciBar(0xE0000000, 0x1000)]
    )
    dev = await add_function(kernel, slot)
    await pci_stop_and_remove_bus_device(dev)
    assert seen == [("add", False), ("bind", True), ("unbind", True), ("remove", False)]
