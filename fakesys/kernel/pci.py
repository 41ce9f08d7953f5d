"""The PCI bus (drivers/pci/pci-driver.c, pci-sysfs.c, probe.c, remove.c).

The simulated hardware is the bus's list of :class:`PciSlot` functions behind one host
bridge, ``/sys/devices/pci0000:00``. Enumeration creates a :class:`PciDevice` for each slot that has
none; ``remove`` (0220) deletes the device, which stays in the hardware, and the bus's
``rescan`` (0200) finds it again, as on a real machine. The attribute set is the one pciutils
reads: ``lspci -A linux-sysfs -O sysfs.path=<mount>/sys/bus/pci`` lists the devices with their
drivers.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError, current_caller
from .bus import BusType
from .core import Device, device_add, device_del, put_device
from .dd import device_release_driver
from .driver import Driver
from .hw import Hardware
from .lib import buf_to_str, kstrtoul
from .platform import DEV_ATTR_DRIVER_OVERRIDE
from .sysfs import RO, RW, WO, SysfsAttr, SysfsBinAttr

if TYPE_CHECKING:
    from .kernel import Kernel
    from .module import Module

PCI_ANY_ID = 0xFFFFFFFF
PCI_CFG_SPACE_SIZE = 256
PCI_NUM_RESOURCES_SHOWN = 7  # PCI_ROM_RESOURCE + 1 for a non-bridge device
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_SIZEALIGN = 0x40000


@dataclass
class PciBar:
    start: int
    size: int
    prefetch: bool = False
    io: bool = False

    @property
    def low_bits(self) -> int:
        """The flag bits of the BAR register itself (space, prefetchable)."""
        return 0x1 if self.io else (0x8 if self.prefetch else 0)

    @property
    def flags(self) -> int:
        """The resource flags as decode_bar() builds them: the BAR's own low bits, the
        resource type, and IORESOURCE_SIZEALIGN (drivers/pci/probe.c)."""
        if self.io:
            return self.low_bits | IORESOURCE_IO | IORESOURCE_SIZEALIGN
        prefetch = IORESOURCE_PREFETCH if self.prefetch else 0
        return self.low_bits | IORESOURCE_MEM | prefetch | IORESOURCE_SIZEALIGN


@dataclass
class PciSlot:
    """One PCI function as the hardware presents it."""

    slot_name: str  # 0000:00:02.0
    vendor: int
    device: int
    subsystem_vendor: int = 0
    subsystem_device: int = 0
    class_code: int = 0  # 24 bits: base class, subclass, prog-if
    revision: int = 0
    irq: int = 0
    bars: list[PciBar] = field(default_factory=list)
    hw: Hardware = field(default_factory=Hardware)


@dataclass(frozen=True)
class PciDeviceId:
    vendor: int = PCI_ANY_ID
    device: int = PCI_ANY_ID
    subvendor: int = PCI_ANY_ID
    subdevice: int = PCI_ANY_ID
    class_code: int = 0
    class_mask: int = 0

    def matches(self, slot: PciSlot) -> bool:
        """pci_match_one_device()."""
        return (
            self.vendor in (PCI_ANY_ID, slot.vendor)
            and self.device in (PCI_ANY_ID, slot.device)
            and self.subvendor in (PCI_ANY_ID, slot.subsystem_vendor)
            and self.subdevice in (PCI_ANY_ID, slot.subsystem_device)
            and not ((self.class_code ^ slot.class_code) & self.class_mask)
        )


class PciDevice(Device):
    def __init__(self, kernel: Kernel, slot: PciSlot) -> None:
        super().__init__(
            kernel, slot.slot_name, bus=kernel.buses["pci"], parent=kernel.pci_host_bridge
        )
        self.slot = slot
        self.hw = slot.hw
        self.config = bytearray(config_space(slot))


class PciDriver(Driver):
    def __init__(
        self,
        kernel: Kernel,
        name: str,
        owner: Module | None = None,
        id_table: Sequence[PciDeviceId] = (),
    ) -> None:
        super().__init__(kernel.buses["pci"], name, owner)
        self.id_table = tuple(id_table)


def config_space(slot: PciSlot) -> bytes:
    """A type 0 configuration header (include/uapi/linux/pci_regs.h offsets)."""
    cfg = bytearray(PCI_CFG_SPACE_SIZE)
    struct.pack_into("<HH", cfg, 0x00, slot.vendor, slot.device)
    struct.pack_into("<HH", cfg, 0x04, 0x0007, 0x0010)  # command: io|mem|master; status: caps
    cfg[0x08] = slot.revision
    cfg[0x09:0x0C] = slot.class_code.to_bytes(3, "little")
    for i, bar in enumerate(slot.bars[:6]):
        struct.pack_into("<I", cfg, 0x10 + 4 * i, (bar.start | bar.low_bits) & 0xFFFFFFFF)
    struct.pack_into("<HH", cfg, 0x2C, slot.subsystem_vendor, slot.subsystem_device)
    cfg[0x3C] = slot.irq & 0xFF
    cfg[0x3D] = 1 if slot.irq else 0
    return bytes(cfg)


def _modalias(slot: PciSlot) -> str:
    cc = slot.class_code
    return (
        f"pci:v{slot.vendor:08X}d{slot.device:08X}sv{slot.subsystem_vendor:08X}"
        f"sd{slot.subsystem_device:08X}bc{cc >> 16:02X}sc{(cc >> 8) & 0xFF:02X}i{cc & 0xFF:02X}"
    )


def _slot(dev: Device) -> PciSlot:
    assert isinstance(dev, PciDevice)
    return dev.slot


def _resource_show(dev: Device) -> str:
    bars = _slot(dev).bars
    lines = []
    for i in range(PCI_NUM_RESOURCES_SHOWN):
        if i < len(bars) and bars[i].size:
            bar = bars[i]
            lines.append(f"{bar.start:#018x} {bar.start + bar.size - 1:#018x} {bar.flags:#018x}\n")
        else:
            lines.append(f"{0:#018x} {0:#018x} {0:#018x}\n")
    return "".join(lines)


async def _remove_store(dev: Device, buf: bytes) -> int:
    """remove_store(): a nonzero number removes the device; it comes back on rescan."""
    if kstrtoul(buf_to_str(buf), 0):
        assert dev.kn is not None
        node = dev.kn.lookup("remove")
        assert node is not None
        # device_remove_file_self(): only one of two racing writers goes on.
        if await dev.kernel.kernfs.remove_self(node):
            await pci_stop_and_remove_bus_device(dev)
    return len(buf)


async def _dev_rescan_store(dev: Device, buf: bytes) -> int:
    if kstrtoul(buf_to_str(buf), 0):
        await pci_rescan_bus(dev.kernel)
    return len(buf)


def _enable_show(dev: Device) -> str:
    return f"{1 if dev.driver is not None else 0}\n"


def _hex(width: int, getter: str) -> SysfsAttr[Device]:
    return SysfsAttr[Device](
        getter.removesuffix("_code"),
        RO,
        lambda dev: f"{getattr(_slot(dev), getter):#0{width + 2}x}\n",
    )


async def _config_read(dev: Device, offset: int, count: int) -> bytes:
    assert isinstance(dev, PciDevice)
    caller = current_caller.get()
    # pci_read_config(): without CAP_SYS_ADMIN only the first 64 bytes are readable.
    limit = PCI_CFG_SPACE_SIZE if caller is None or caller.uid == 0 else 64
    return bytes(dev.config[offset : min(offset + count, limit)])


# Registers a driver or user may change; the rest of the header is read-only hardware.
_CONFIG_WRITABLE = {0x04, 0x05, 0x0C, 0x0D, 0x3C}


async def _config_write(dev: Device, offset: int, data: bytes) -> int:
    assert isinstance(dev, PciDevice)
    caller = current_caller.get()
    if caller is not None and caller.uid != 0:
        raise ErrnoError(errno.EPERM)
    for i, byte in enumerate(data):
        if offset + i in _CONFIG_WRITABLE:
            dev.config[offset + i] = byte
    return len(data)


PCI_DEV_CONFIG = SysfsBinAttr[Device](
    "config", RW, _config_read, _config_write, size=PCI_CFG_SPACE_SIZE
)


async def _bus_rescan_store(bus: BusType, buf: bytes) -> int:
    if kstrtoul(buf_to_str(buf), 0):
        await pci_rescan_bus(bus.kernel)
    return len(buf)


class PciBus(BusType):
    dev_attrs = (
        _hex(4, "vendor"),
        _hex(4, "device"),
        _hex(4, "subsystem_vendor"),
        _hex(4, "subsystem_device"),
        _hex(6, "class_code"),
        _hex(2, "revision"),
        SysfsAttr[Device]("irq", RO, lambda dev: f"{_slot(dev).irq}\n"),
        SysfsAttr[Device]("resource", RO, _resource_show),
        SysfsAttr[Device]("enable", RO, _enable_show),
        SysfsAttr[Device]("modalias", RO, lambda dev: _modalias(_slot(dev)) + "\n"),
        SysfsAttr[Device]("numa_node", RO, lambda dev: "-1\n"),
        SysfsAttr[Device]("local_cpus", RO, lambda dev: "3\n"),
        SysfsAttr[Device]("local_cpulist", RO, lambda dev: "0-1\n"),
        SysfsAttr[Device]("dma_mask_bits", RO, lambda dev: "64\n"),
        SysfsAttr[Device]("consistent_dma_mask_bits", RO, lambda dev: "64\n"),
        SysfsAttr[Device]("msi_bus", RO, lambda dev: "1\n"),
        SysfsAttr[Device]("broken_parity_status", RO, lambda dev: "0\n"),
        SysfsAttr[Device]("d3cold_allowed", RO, lambda dev: "1\n"),
        SysfsAttr[Device]("power_state", RO, lambda dev: "D0\n"),
        DEV_ATTR_DRIVER_OVERRIDE,
        SysfsAttr[Device]("remove", 0o220, store=_remove_store),
        SysfsAttr[Device]("rescan", WO, store=_dev_rescan_store),
    )
    dev_bin_attrs = (PCI_DEV_CONFIG,)
    bus_attrs = (SysfsAttr[BusType]("rescan", WO, store=_bus_rescan_store),)

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel, "pci")
        #: The functions the hardware presents, found by enumeration and rescans.
        self.slots: list[PciSlot] = []
        #: pci_rescan_remove_lock (pci_lock_rescan_remove()): one rescan at a time.
        self.rescan_lock = trio.Lock()

    def match(self, dev: Device, drv: Driver) -> bool:
        if not isinstance(drv, PciDriver):
            return False
        slot = _slot(dev)
        return any(entry.matches(slot) for entry in drv.id_table)

    def uevent(self, dev: Device) -> list[tuple[str, str]]:
        """pci_uevent()."""
        slot = _slot(dev)
        return [
            ("PCI_CLASS", f"{slot.class_code:X}"),
            ("PCI_ID", f"{slot.vendor:04X}:{slot.device:04X}"),
            ("PCI_SUBSYS_ID", f"{slot.subsystem_vendor:04X}:{slot.subsystem_device:04X}"),
            ("PCI_SLOT_NAME", slot.slot_name),
            ("MODALIAS", _modalias(slot)),
        ]


async def pci_stop_and_remove_bus_device(dev: Device) -> None:
    """Unbind, then delete the device; the slot stays in the hardware list."""
    await device_release_driver(dev)
    await device_del(dev)
    put_device(dev)


def pci_bus(kernel: Kernel) -> PciBus:
    bus = kernel.buses["pci"]
    assert isinstance(bus, PciBus)
    return bus


async def pci_rescan_bus(kernel: Kernel) -> None:
    """pci_rescan_bus() under pci_lock_rescan_remove(): add a device for every slot that has
    none, in slot order."""
    bus = pci_bus(kernel)
    async with bus.rescan_lock:
        present = {dev.name for dev in bus.devices}
        for slot in bus.slots:
            if slot.slot_name not in present:
                await device_add(PciDevice(kernel, slot))
