"""The PCI bus (drivers/pci/pci-driver.c, pci-sysfs.c, probe.c, remove.c, pci.c, bus.c).

The simulated hardware is the bus's list of :class:`PciSlot` functions behind one host bridge,
``/sys/devices/pci0000:00``, whose root bus is the class device ``pci_bus/0000:00``.
Enumeration creates a :class:`PciDevice` for each slot that has none; ``remove`` (0220) deletes
the device, which stays in the hardware, and ``rescan`` (0200) finds it again, as on a real
machine.

Each function's configuration space agrees with itself: a capability list at 0x34 behind the
status register's capability bit (power management, MSI, and for a PCI Express function a PCI
Express capability of a Root Complex Integrated Endpoint, the kind of function a root bus
has, whose link registers are not implemented), BARs that decode the ranges of ``resource`` (a
range above 4 GiB takes a 64-bit BAR, two registers), the multi-function header bit when the
slot has sibling functions, and 4096 bytes of configuration space for a PCI Express function.

The files are those of pci_dev_groups and pci_dev_attr_groups as a kernel with CONFIG_NUMA,
CONFIG_PM, CONFIG_ACPI, CONFIG_PCIEASPM and CONFIG_VGA_ARB on x86 shows them for such a
function, with their modes, sizes and formats: ``resourceN`` (and ``resourceN_wc`` for a
prefetchable one) per BAR, created after the device and before drivers are tried
(pci_bus_add_device()); ``boot_vga`` for a VGA function; the link attributes for a PCI Express
one; an empty ``link/`` (no ASPM link state on a root bus). ``lspci -A linux-sysfs`` reads the
tree. A bound driver counts as having done what PCI drivers do in probe: enabled the function
(``enable``), set bus mastering and a 64-bit DMA mask; unbinding disables it again.

Limitations: ``resourceN`` cannot be mapped (a memory BAR answers read and write with EIO, as
the kernel does without mmap; an I/O BAR reads zeros); no ROM, no bridges, no interrupts by
MSI (``msi_irqs/`` never appears), no reset (the PM capability says No_Soft_Reset and there is
no FLR, so no ``reset`` or ``reset_method``), no firmware node (``firmware_node``,
``waiting_for_supplier``, ``label``), no runtime suspend (see :mod:`.power`).
``drivers_autoprobe`` also holds back new PCI devices, which the kernel's pci_bus_add_device()
would attach anyway: scenarios use it to leave a device unbound.
"""

from __future__ import annotations

import errno
import re
import struct
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import trio

from ..kernfs import PAGE_SIZE, ErrnoError, current_caller
from .bus import BusType
from .class_ import Class
from .core import Device, device_add, device_del, put_device
from .dd import device_release_driver, driver_attach
from .driver import Driver
from .hw import Hardware
from .lib import buf_to_str, kstrtoint, kstrtoul
from .platform import DEV_ATTR_DRIVER_OVERRIDE
from .power import pm_runtime_enable, pm_runtime_forbid, pm_runtime_set_active
from .printk import KERN_ALERT, KERN_INFO
from .stacktrace import frames
from .sysfs import RO, RW, WO, SysfsAttr, SysfsBinAttr, create_bin_file, create_group

if TYPE_CHECKING:
    from .kernel import Kernel

PCI_ANY_ID = 0xFFFFFFFF
PCI_CFG_SPACE_SIZE = 256
PCI_CFG_SPACE_EXP_SIZE = 4096
PCI_STD_NUM_BARS = 6
PCI_BRIDGE_RESOURCES = 7  # the BARs and the ROM: the lines of ``resource`` for a non-bridge

IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200
IORESOURCE_PREFETCH = 0x2000
IORESOURCE_SIZEALIGN = 0x40000
IORESOURCE_MEM_64 = 0x100000

# include/uapi/linux/pci_regs.h
PCI_COMMAND = 0x04
PCI_COMMAND_IO = 0x1
PCI_COMMAND_MEMORY = 0x2
PCI_COMMAND_MASTER = 0x4
PCI_STATUS = 0x06
PCI_STATUS_CAP_LIST = 0x10
PCI_HEADER_TYPE = 0x0E
PCI_HEADER_TYPE_MFD = 0x80
PCI_BASE_ADDRESS_0 = 0x10
PCI_BASE_ADDRESS_SPACE_IO = 0x1
PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x4
PCI_BASE_ADDRESS_MEM_PREFETCH = 0x8
PCI_SUBSYSTEM_VENDOR_ID = 0x2C
PCI_CAPABILITY_LIST = 0x34
PCI_INTERRUPT_LINE = 0x3C
PCI_CAP_ID_PM = 0x01
PCI_CAP_ID_MSI = 0x05
PCI_CAP_ID_EXP = 0x10
PCI_PM_CTRL_NO_SOFT_RESET = 0x0008
PCI_MSI_FLAGS_64BIT = 0x0080
PCI_EXP_TYPE_RC_END = 0x9
PCI_EXP_DEVCAP_RBER = 0x8000
PCI_EXP_DEVCTL_RELAX_EN = 0x0010
PCI_EXP_DEVCTL_NOSNOOP_EN = 0x0800
PCI_EXP_DEVCTL_READRQ_512B = 0x2000
PCI_CLASS_DISPLAY_VGA = 0x0300
PCI_CLASS_NOT_DEFINED_VGA = 0x0001

# Where the capabilities sit; each structure points at the next, the last at 0.
PCI_PM_CAP_OFFSET = 0x40
PCI_MSI_CAP_OFFSET = 0x50
PCI_EXP_CAP_OFFSET = 0x70
PCI_EXP_CAP_SIZEOF = 0x3C

# Registers a driver or user may change; the rest of the header is read-only hardware.
_CONFIG_WRITABLE = {0x04, 0x05, 0x0C, 0x0D, 0x3C}

NUMA_NO_NODE = -1
MAX_NUMNODES = 1 << 10  # CONFIG_NODES_SHIFT of the distributions' x86 kernels
ONLINE_NODES = {0}
FW_BUG = "[Firmware Bug]: "
TAINT_FIRMWARE_WORKAROUND = 11  # 'I' (include/linux/panic.h)


@dataclass
class PciBar:
    start: int
    size: int
    prefetch: bool = False
    io: bool = False

    @property
    def is_64(self) -> bool:
        """A memory range that does not fit below 4 GiB needs a 64-bit BAR."""
        return not self.io and self.start + self.size > 1 << 32

    @property
    def low_bits(self) -> int:
        """The flag bits of the BAR register itself (space, type, prefetchable)."""
        if self.io:
            return PCI_BASE_ADDRESS_SPACE_IO
        bits = PCI_BASE_ADDRESS_MEM_TYPE_64 if self.is_64 else 0
        return bits | (PCI_BASE_ADDRESS_MEM_PREFETCH if self.prefetch else 0)

    @property
    def flags(self) -> int:
        """The resource flags as decode_bar() and __pci_read_base() build them: the BAR's
        own low bits, the resource type, 64-bit, prefetchable, and IORESOURCE_SIZEALIGN."""
        if self.io:
            return self.low_bits | IORESOURCE_IO | IORESOURCE_SIZEALIGN
        flags = self.low_bits | IORESOURCE_MEM | IORESOURCE_SIZEALIGN
        if self.is_64:
            flags |= IORESOURCE_MEM_64
        if self.prefetch:
            flags |= IORESOURCE_PREFETCH
        return flags


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
    #: A PCI Express function (a Root Complex Integrated Endpoint) or a conventional one.
    pcie: bool = True

    @property
    def devfn_prefix(self) -> str:
        """``domain:bus:device``, shared by the functions of one slot."""
        return self.slot_name.rsplit(".", 1)[0]

    def resources(self) -> list[PciBar | None]:
        """The BAR resources by register (pci_read_bases()): a 64-bit BAR takes two
        registers and leaves the second resource empty."""
        resources: list[PciBar | None] = []
        for bar in self.bars:
            if len(resources) + (2 if bar.is_64 else 1) > PCI_STD_NUM_BARS:
                break
            resources.append(bar)
            if bar.is_64:
                resources.append(None)
        return resources + [None] * (PCI_BRIDGE_RESOURCES - len(resources))


@dataclass(frozen=True)
class PciDeviceId:
    vendor: int = PCI_ANY_ID
    device: int = PCI_ANY_ID
    subvendor: int = PCI_ANY_ID
    subdevice: int = PCI_ANY_ID
    class_code: int = 0
    class_mask: int = 0
    driver_data: int = 0

    def matches(self, slot: PciSlot) -> bool:
        """pci_match_one_device()."""
        return (
            self.vendor in (PCI_ANY_ID, slot.vendor)
            and self.device in (PCI_ANY_ID, slot.device)
            and self.subvendor in (PCI_ANY_ID, slot.subsystem_vendor)
            and self.subdevice in (PCI_ANY_ID, slot.subsystem_device)
            and not ((self.class_code ^ slot.class_code) & self.class_mask)
        )


def config_space(slot: PciSlot) -> bytearray:
    """A type 0 configuration header and its capabilities, as the hardware resets them."""
    cfg = bytearray(PCI_CFG_SPACE_EXP_SIZE if slot.pcie else PCI_CFG_SPACE_SIZE)
    decode = 0
    for bar in slot.bars:
        decode |= PCI_COMMAND_IO if bar.io else PCI_COMMAND_MEMORY
    # The firmware assigned the BARs and turned decoding on; bus mastering waits for a driver.
    struct.pack_into("<HHHH", cfg, 0x00, slot.vendor, slot.device, decode, PCI_STATUS_CAP_LIST)
    cfg[0x08] = slot.revision
    cfg[0x09:0x0C] = slot.class_code.to_bytes(3, "little")
    for i, resource in enumerate(slot.resources()[:PCI_STD_NUM_BARS]):
        if resource is not None:
            width = 8 if resource.is_64 else 4
            value = (resource.start | resource.low_bits) & ((1 << 8 * width) - 1)
            offset = PCI_BASE_ADDRESS_0 + 4 * i
            cfg[offset : offset + width] = value.to_bytes(width, "little")
    struct.pack_into(
        "<HH", cfg, PCI_SUBSYSTEM_VENDOR_ID, slot.subsystem_vendor, slot.subsystem_device
    )
    cfg[PCI_CAPABILITY_LIST] = PCI_PM_CAP_OFFSET
    cfg[PCI_INTERRUPT_LINE] = slot.irq & 0xFF
    cfg[PCI_INTERRUPT_LINE + 1] = 1 if slot.irq else 0  # INTA#
    # Power management, version 3; in D0; No_Soft_Reset, so a PM reset is not offered.
    struct.pack_into(
        "<BBHH", cfg, PCI_PM_CAP_OFFSET, PCI_CAP_ID_PM, PCI_MSI_CAP_OFFSET, 0x0003,
        PCI_PM_CTRL_NO_SOFT_RESET,
    )  # fmt: skip
    # MSI with 64-bit addresses and one vector, disabled.
    msi_next = PCI_EXP_CAP_OFFSET if slot.pcie else 0
    struct.pack_into("<BBH", cfg, PCI_MSI_CAP_OFFSET, PCI_CAP_ID_MSI, msi_next, PCI_MSI_FLAGS_64BIT)
    if slot.pcie:
        # Capability version 2, an integrated endpoint: no link, no slot; no FLR in DevCap.
        struct.pack_into(
            "<BBHIH", cfg, PCI_EXP_CAP_OFFSET, PCI_CAP_ID_EXP, 0,
            (PCI_EXP_TYPE_RC_END << 4) | 2, PCI_EXP_DEVCAP_RBER,
            PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_NOSNOOP_EN | PCI_EXP_DEVCTL_READRQ_512B,
        )  # fmt: skip
    return cfg


class PciDevice(Device):
    """``struct pci_dev``: the function's configuration space and what the core keeps of it."""

    def __init__(self, kernel: Kernel, slot: PciSlot) -> None:
        super().__init__(
            kernel, slot.slot_name, bus=kernel.buses["pci"], parent=kernel.pci_host_bridge
        )
        self.slot = slot
        self.hw = slot.hw
        self.resources = slot.resources()
        self.config = config_space(slot)
        #: pci_cfg_space_size(): extended configuration space for a PCI Express function.
        self.cfg_size = len(self.config)
        self.enable_cnt = 0
        self.broken_parity_status = False
        self.no_msi = False
        self.numa_node = NUMA_NO_NODE
        self.dma_mask_bits = 32  # pci_setup_device(): 32-bit until a driver sets its mask
        self.d3cold_allowed = True  # pci_pm_init(), for a function with a PM capability
        self._driver_seen: Driver | None = None
        # pci_pm_init(): runtime PM forbidden until userspace allows it, active, enabled.
        pm_runtime_forbid(self)
        pm_runtime_set_active(self)
        pm_runtime_enable(self)

    @property
    def is_vga(self) -> bool:
        return (self.slot.class_code >> 8) in (PCI_CLASS_DISPLAY_VGA, PCI_CLASS_NOT_DEFINED_VGA)

    def sync_driver(self) -> None:
        """Apply what the driver did since last looked at: pci_enable_device(),
        pci_set_master() and a 64-bit DMA mask in probe, pci_disable_device() in remove (it
        drops bus mastering; the mask stays)."""
        if self.driver is self._driver_seen:
            return
        if self._driver_seen is not None:
            self.disable()
        if self.driver is not None:
            self.enable_cnt += 1
            self.config[PCI_COMMAND] |= PCI_COMMAND_MASTER
            self.dma_mask_bits = 64
        self._driver_seen = self.driver

    def disable(self) -> None:
        """pci_disable_device(): the last disable turns bus mastering off."""
        self.enable_cnt -= 1
        if self.enable_cnt == 0:
            self.config[PCI_COMMAND] &= ~PCI_COMMAND_MASTER

    def read_config(self) -> bytearray:
        """The configuration space as a read sees it now."""
        self.sync_driver()
        bus = pci_bus(self.kernel)
        siblings = any(
            s is not self.slot and s.devfn_prefix == self.slot.devfn_prefix for s in bus.slots
        )
        self.config[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_MFD if siblings else 0
        return self.config


def pci_match_id(drv: Driver, slot: PciSlot) -> PciDeviceId | None:
    """pci_match_device() without the override: the dynamic IDs, then the table."""
    ids = (*drv.dynids, *drv.id_table)
    return next((i for i in ids if isinstance(i, PciDeviceId) and i.matches(slot)), None)


class PciDriver(Driver, name="pci_driver", var="pdrv"):
    """``struct pci_driver``: its id table is a list of :class:`PciDeviceId`, and ``new_id``
    adds dynamic ones (``Driver.dynids``)."""

    BUS = "pci"


def _modalias(slot: PciSlot) -> str:
    cc = slot.class_code
    return (
        f"pci:v{slot.vendor:08X}d{slot.device:08X}sv{slot.subsystem_vendor:08X}"
        f"sd{slot.subsystem_device:08X}bc{cc >> 16:02X}sc{(cc >> 8) & 0xFF:02X}i{cc & 0xFF:02X}"
    )


def _pdev(dev: Device) -> PciDevice:
    assert isinstance(dev, PciDevice)
    return dev


def _caller_is_admin() -> bool:
    """capable(CAP_SYS_ADMIN) for the writer: root."""
    caller = current_caller.get()
    return caller is None or caller.uid == 0


# -- pci_dev_group --


def _hex(width: int, field_name: str, name: str | None = None) -> SysfsAttr[Device]:
    """pci_config_attr(): ``0x%04x`` and the like."""
    return SysfsAttr[Device](
        name or field_name,
        RO,
        lambda dev: f"{getattr(_pdev(dev).slot, field_name):#0{width + 2}x}\n",
    )


def _resource_show(dev: Device) -> str:
    lines = []
    for bar in _pdev(dev).resources:
        if bar is not None:
            lines.append(f"{bar.start:#018x} {bar.start + bar.size - 1:#018x} {bar.flags:#018x}\n")
        else:
            lines.append(f"{0:#018x} {0:#018x} {0:#018x}\n")
    return "".join(lines)


def _bool_store(attribute: str) -> SysfsAttr[Device]:
    """An RW flag set from kstrtoul() (broken_parity_status, d3cold_allowed): ``!!val``."""

    async def store(dev: Device, buf: bytes) -> int:
        setattr(_pdev(dev), attribute, bool(kstrtoul(buf_to_str(buf), 0)))
        return len(buf)

    return SysfsAttr[Device](
        attribute, RW, lambda dev: f"{int(getattr(_pdev(dev), attribute))}\n", store
    )


def _enable_show(dev: Device) -> str:
    pdev = _pdev(dev)
    pdev.sync_driver()
    return f"{pdev.enable_cnt}\n"


async def _enable_store(dev: Device, buf: bytes) -> int:
    """enable_store(): root only, and not while a driver has the function."""
    if not _caller_is_admin():
        raise ErrnoError(errno.EPERM)
    val = kstrtoul(buf_to_str(buf), 0)
    pdev = _pdev(dev)
    async with dev.lock:
        pdev.sync_driver()
        if dev.driver is not None:
            raise ErrnoError(errno.EBUSY)
        if val:
            pdev.enable_cnt += 1  # pci_enable_device() counts every call
        elif pdev.enable_cnt > 0:
            pdev.disable()
        else:
            raise ErrnoError(errno.EIO)
    return len(buf)


async def _numa_node_store(dev: Device, buf: bytes) -> int:
    """numa_node_store(): a firmware workaround, so it taints (I) and says so."""
    if not _caller_is_admin():
        raise ErrnoError(errno.EPERM)
    try:
        node = kstrtoint(buf_to_str(buf), 0)
    except ErrnoError:
        raise ErrnoError(errno.EINVAL) from None
    if (node < 0 and node != NUMA_NO_NODE) or node >= MAX_NUMNODES:
        raise ErrnoError(errno.EINVAL)
    if node != NUMA_NO_NODE and node not in ONLINE_NODES:
        raise ErrnoError(errno.EINVAL)
    pdev = _pdev(dev)
    if node == pdev.numa_node:
        return len(buf)
    dev.kernel.taint.add(TAINT_FIRMWARE_WORKAROUND)
    dev.printk(
        KERN_ALERT, f"{FW_BUG}Overriding NUMA node to {node}.  Contact your vendor for updates."
    )
    pdev.numa_node = node
    return len(buf)


async def _msi_bus_store(dev: Device, buf: bytes) -> int:
    if not _caller_is_admin():
        raise ErrnoError(errno.EPERM)
    val = kstrtoul(buf_to_str(buf), 0)
    # A function with no subordinate bus: only what future drivers may request changes.
    _pdev(dev).no_msi = not val
    dev.printk(KERN_INFO, f"MSI/MSI-X {'allowed' if val else 'disallowed'} for future drivers")
    return len(buf)


def _irq_show(dev: Device) -> str:
    return f"{_pdev(dev).slot.irq}\n"


def _modalias_show(dev: Device) -> str:
    return _modalias(_pdev(dev).slot) + "\n"


def _numa_node_show(dev: Device) -> str:
    return f"{_pdev(dev).numa_node}\n"


def _msi_bus_show(dev: Device) -> str:
    return f"{int(not _pdev(dev).no_msi)}\n"


def _dma_mask_bits_show(dev: Device) -> str:
    pdev = _pdev(dev)
    pdev.sync_driver()
    return f"{pdev.dma_mask_bits}\n"


# pci_dev_attrs, in the kernel's order
PCI_DEV_ATTRS = (
    SysfsAttr[Device]("power_state", RO, lambda dev: "D0\n"),
    SysfsAttr[Device]("resource", RO, _resource_show),
    _hex(4, "vendor"),
    _hex(4, "device"),
    _hex(4, "subsystem_vendor"),
    _hex(4, "subsystem_device"),
    _hex(2, "revision"),
    _hex(6, "class_code", "class"),
    # The INTx line: no driver has MSI enabled.
    SysfsAttr[Device]("irq", RO, _irq_show),
    # cpumap_print_to_pagebuf() of the node's CPUs: both of the machine's.
    SysfsAttr[Device]("local_cpus", RO, lambda dev: "3\n"),
    SysfsAttr[Device]("local_cpulist", RO, lambda dev: "0-1\n"),
    SysfsAttr[Device]("modalias", RO, _modalias_show),
    SysfsAttr[Device]("numa_node", RW, _numa_node_show, _numa_node_store),
    SysfsAttr[Device]("dma_mask_bits", RO, _dma_mask_bits_show),
    SysfsAttr[Device]("consistent_dma_mask_bits", RO, _dma_mask_bits_show),
    SysfsAttr[Device]("enable", RW, _enable_show, _enable_store),
    _bool_store("broken_parity_status"),
    SysfsAttr[Device]("msi_bus", RW, _msi_bus_show, _msi_bus_store),
    _bool_store("d3cold_allowed"),
    DEV_ATTR_DRIVER_OVERRIDE,
    # pci_ari_enabled() of a root bus: no ARI.
    SysfsAttr[Device]("ari_enabled", RO, lambda dev: "0\n"),
)


async def _config_read(dev: Device, offset: int, count: int) -> bytes:
    """pci_read_config(): without CAP_SYS_ADMIN only the first 64 bytes are readable."""
    pdev = _pdev(dev)
    limit = pdev.cfg_size if _caller_is_admin() else 64
    return bytes(pdev.read_config()[offset : min(offset + count, limit)])


async def _config_write(dev: Device, offset: int, data: bytes) -> int:
    pdev = _pdev(dev)
    config = pdev.read_config()
    for i, byte in enumerate(data):
        if offset + i in _CONFIG_WRITABLE:
            config[offset + i] = byte
    return len(data)


# pci_dev_config_attr_group: its bin_size is the function's configuration space size.
def _config_size(dev: Device) -> int:
    return _pdev(dev).cfg_size


PCI_DEV_CONFIG = SysfsBinAttr[Device]("config", RW, _config_read, _config_write, _config_size)


# -- pci_dev_attr_groups: the device type's --


def _boot_vga_show(dev: Device) -> str:
    return f"{int(pci_bus(dev.kernel).vga_default is dev)}\n"


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


async def _rescan_store(dev: Device, buf: bytes) -> int:
    """dev_rescan_store() and the root bus's bus_rescan_store(): rescan the (only) bus."""
    if kstrtoul(buf_to_str(buf), 0):
        await pci_rescan_bus(dev.kernel)
    return len(buf)


PCI_DEV_HP_ATTRS = (
    SysfsAttr[Device]("remove", 0o220, store=_remove_store),
    SysfsAttr[Device]("rescan", WO, store=_rescan_store),
)
PCI_DEV_BOOT_VGA = SysfsAttr[Device]("boot_vga", RO, _boot_vga_show)
# pcie_dev_attrs. An integrated endpoint implements no link registers: they read as 0, which
# pcie_link_speed[] and pci_speed_string() turn into "Unknown", and a width of 0.
PCIE_DEV_ATTRS = (
    SysfsAttr[Device]("current_link_speed", RO, lambda dev: "Unknown\n"),
    SysfsAttr[Device]("current_link_width", RO, lambda dev: "0\n"),
    SysfsAttr[Device]("max_link_width", RO, lambda dev: "0\n"),
    SysfsAttr[Device]("max_link_speed", RO, lambda dev: "Unknown\n"),
)
# aspm_ctrl_attr_group: a named group whose files are visible only for a link with ASPM
# state; the directory is created all the same.
ASPM_LINK_DIR = "link"


def pci_dev_type_attrs(dev: PciDevice) -> list[SysfsAttr[Device]]:
    """The visible files of pci_dev_attr_groups for this function."""
    attrs = [PCI_DEV_BOOT_VGA] if dev.is_vga else []
    attrs += PCI_DEV_HP_ATTRS
    if dev.slot.pcie:
        attrs += PCIE_DEV_ATTRS
    return attrs


# -- resourceN (pci_create_resource_files()) --


async def _resource_mmap_only_read(dev: Device, offset: int, count: int) -> bytes:
    """sysfs_kf_bin_read(): a memory BAR's attribute has mmap and no read, so -EIO."""
    raise ErrnoError(errno.EIO)


async def _resource_mmap_only_write(dev: Device, offset: int, data: bytes) -> int:
    raise ErrnoError(errno.EIO)


def _io_access(count: int) -> None:
    """pci_resource_io(): port accesses of 1, 2 or 4 bytes only."""
    if count not in (1, 2, 4):
        raise ErrnoError(errno.EINVAL)


async def _resource_io_read(dev: Device, offset: int, count: int) -> bytes:
    _io_access(count)
    return bytes(count)


async def _resource_io_write(dev: Device, offset: int, data: bytes) -> int:
    _io_access(len(data))
    return len(data)


def pci_create_resource_files(dev: PciDevice) -> None:
    """``resourceN`` (0600, the BAR's size) per BAR, and ``resourceN_wc`` for a prefetchable
    one (x86 with PAT can map it write-combined)."""
    assert dev.kn is not None
    root = dev.kernel.kernfs
    for i, bar in enumerate(dev.resources[:PCI_STD_NUM_BARS]):
        if bar is None or not bar.size:
            continue
        if bar.io:
            attr = SysfsBinAttr[Device](
                f"resource{i}", 0o600, _resource_io_read, _resource_io_write, bar.size
            )
            create_bin_file(root, dev.kn, dev, attr)
            continue
        mmap_only = SysfsBinAttr[Device](
            f"resource{i}", 0o600, _resource_mmap_only_read, _resource_mmap_only_write, bar.size
        )
        create_bin_file(root, dev.kn, dev, mmap_only)
        if bar.prefetch:
            create_bin_file(root, dev.kn, dev, replace(mmap_only, name=f"resource{i}_wc"))


async def pci_remove_resource_files(dev: PciDevice) -> None:
    assert dev.kn is not None
    for name in [n for n in dev.kn.children if re.fullmatch(r"resource\d(_wc)?", n)]:
        kn = dev.kn.lookup(name)
        if kn is not None:
            await dev.kernel.kernfs.remove(kn)


# -- the bus --


def _sscanf_hex(text: str, fields: int) -> list[int]:
    """sscanf() with ``fields`` ``%x`` conversions: the values parsed before the first
    failure."""
    values = []
    position = 0
    for _ in range(fields):
        match = re.compile(r"\s*(?:0[xX])?([0-9a-fA-F]+)").match(text, position)
        if match is None:
            break
        values.append(int(match.group(1), 16))
        position = match.end()
    return values


async def _new_id_store(drv: Driver, buf: bytes) -> int:
    """new_id_store(): ``vendor device [subvendor subdevice class class_mask driver_data]``."""
    values = _sscanf_hex(buf_to_str(buf), 7)
    if len(values) < 2:
        raise ErrnoError(errno.EINVAL)
    defaults = [0, 0, PCI_ANY_ID, PCI_ANY_ID, 0, 0, 0]
    vendor, device, subvendor, subdevice, class_code, class_mask, driver_data = (
        [v & 0xFFFFFFFF for v in values[:6]] + values[6:] + defaults[len(values) :]
    )
    if len(values) != 7:
        probe = PciSlot("", vendor, device, subvendor, subdevice, class_code)
        if pci_match_id(drv, probe) is not None:
            raise ErrnoError(errno.EEXIST)
    # Only a driver_data value of an existing id_table entry is accepted.
    table = [i for i in drv.id_table if isinstance(i, PciDeviceId)]
    if table and all(i.driver_data != driver_data for i in table):
        raise ErrnoError(errno.EINVAL)
    drv.dynids.append(
        PciDeviceId(vendor, device, subvendor, subdevice, class_code, class_mask, driver_data)
    )
    await driver_attach(drv)
    return len(buf)


async def _remove_id_store(drv: Driver, buf: bytes) -> int:
    """remove_id_store(): the first dynamic ID that matches goes; devices stay bound."""
    values = _sscanf_hex(buf_to_str(buf), 6)
    if len(values) < 2:
        raise ErrnoError(errno.EINVAL)
    vendor, device, subvendor, subdevice, class_code, class_mask = (
        values + [PCI_ANY_ID, PCI_ANY_ID, 0, 0][len(values) - 2 :]
    )
    for dynid in drv.dynids:
        if (
            dynid.vendor == vendor
            and dynid.device == device
            and subvendor in (PCI_ANY_ID, dynid.subvendor)
            and subdevice in (PCI_ANY_ID, dynid.subdevice)
            and not ((dynid.class_code ^ class_code) & class_mask)
        ):
            drv.dynids.remove(dynid)
            return len(buf)
    raise ErrnoError(errno.ENODEV)


async def _bus_rescan_store(bus: BusType, buf: bytes) -> int:
    if kstrtoul(buf_to_str(buf), 0):
        await pci_rescan_bus(bus.kernel)
    return len(buf)


def _resource_alignment_show(bus: BusType) -> str:
    param = pci_bus(bus.kernel).resource_alignment
    return f"{param}\n" if param else ""


async def _resource_alignment_store(bus: BusType, buf: bytes) -> int:
    """The parameter is kept up to the first newline; an empty one clears it. (Its effect,
    realigning BARs on the next enumeration, is not simulated.)"""
    if len(buf) >= PAGE_SIZE - 1:
        raise ErrnoError(errno.EINVAL)
    pci_bus(bus.kernel).resource_alignment = buf_to_str(buf).split("\n", 1)[0]
    return len(buf)


class PciBusClass(Class):
    """``pcibus_class``: the bus behind a bridge, ``/sys/class/pci_bus/<domain>:<bus>``."""

    dev_attrs = (
        SysfsAttr[Device]("rescan", WO, store=_rescan_store),
        SysfsAttr[Device]("cpuaffinity", RO, lambda dev: "3\n"),
        SysfsAttr[Device]("cpulistaffinity", RO, lambda dev: "0-1\n"),
    )

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel, "pci_bus")


class PciBus(BusType):
    probe_frames = frames("pci_device_probe", "local_pci_probe")
    remove_frames = frames("pci_device_remove")
    dev_attrs = PCI_DEV_ATTRS
    drv_attrs = (
        SysfsAttr[Driver]("new_id", WO, store=_new_id_store),
        SysfsAttr[Driver]("remove_id", WO, store=_remove_id_store),
    )
    bus_attrs = (
        SysfsAttr[BusType]("rescan", WO, store=_bus_rescan_store),
        SysfsAttr[BusType](
            "resource_alignment", RW, _resource_alignment_show, _resource_alignment_store
        ),
    )

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel, "pci")
        #: The functions the hardware presents, found by enumeration and rescans.
        self.slots: list[PciSlot] = []
        #: pci_rescan_remove_lock (pci_lock_rescan_remove()): one rescan at a time.
        self.rescan_lock = trio.Lock()
        self.resource_alignment = ""
        #: vgaarb's default VGA device: the first VGA function, while it lives.
        self.vga_default: PciDevice | None = None
        self.bus_class = PciBusClass(kernel)
        #: The root bus's class device, ``pci0000:00/pci_bus/0000:00``.
        self.root_bus: Device | None = None

    def register(self) -> None:
        """pci_driver_init(), pcibus_class_init(), pci_slot_init() (the empty ``slots/``
        kset: no hotplug slot) and the resource_alignment file."""
        super().register()
        self.bus_class.register()
        assert self.kn is not None
        self.kernel.kernfs.create_dir(self.kn, "slots")

    def match(self, dev: Device, drv: Driver) -> bool:
        return pci_match_id(drv, _pdev(dev).slot) is not None

    def uevent(self, dev: Device) -> list[tuple[str, str]]:
        """pci_uevent()."""
        slot = _pdev(dev).slot
        return [
            ("PCI_CLASS", f"{slot.class_code:X}"),
            ("PCI_ID", f"{slot.vendor:04X}:{slot.device:04X}"),
            ("PCI_SUBSYS_ID", f"{slot.subsystem_vendor:04X}:{slot.subsystem_device:04X}"),
            ("PCI_SLOT_NAME", slot.slot_name),
            ("MODALIAS", _modalias(slot)),
        ]

    def add_device(self, dev: Device) -> None:
        """The device type's groups and the config file besides the bus's own attributes;
        vgaarb's notifier picks a default VGA device. A recorded function
        (:mod:`.replay`) brings its own files."""
        super().add_device(dev)
        if not isinstance(dev, PciDevice):
            return
        pdev = dev
        assert dev.kn is not None
        root = self.kernel.kernfs
        create_bin_file(root, dev.kn, dev, PCI_DEV_CONFIG)
        create_group(root, dev.kn, dev, pci_dev_type_attrs(pdev))
        root.create_dir(dev.kn, ASPM_LINK_DIR)
        if pdev.is_vga and self.vga_default is None:
            self.vga_default = pdev

    async def probe_device(self, dev: Device) -> None:
        """pci_bus_add_device(): the resource files, then the drivers."""
        if isinstance(dev, PciDevice):
            pci_create_resource_files(dev)
        await super().probe_device(dev)

    async def remove_device(self, dev: Device) -> None:
        if not isinstance(dev, PciDevice):
            await super().remove_device(dev)
            return
        root = self.kernel.kernfs
        assert dev.kn is not None
        names = [a.name for a in pci_dev_type_attrs(dev)]
        for name in (*names, ASPM_LINK_DIR, PCI_DEV_CONFIG.name):
            kn = dev.kn.lookup(name)
            if kn is not None:
                await root.remove(kn)
        if self.vga_default is dev:
            self.vga_default = None
        await super().remove_device(dev)


def pci_bus(kernel: Kernel) -> PciBus:
    bus = kernel.buses["pci"]
    assert isinstance(bus, PciBus)
    return bus


async def pci_register_host_bridge(kernel: Kernel) -> None:
    """The host bridge, a device of no bus or class, and its root bus's class device."""
    bus = pci_bus(kernel)
    await device_add(kernel.pci_host_bridge)
    bus.root_bus = Device(kernel, "0000:00", cls=bus.bus_class, parent=kernel.pci_host_bridge)
    await device_add(bus.root_bus)


async def pci_stop_and_remove_bus_device(dev: Device) -> None:
    """pci_stop_dev() unbinds the driver and removes the resource files while the device is
    whole; pci_destroy_dev() then deletes it. The slot stays in the hardware list."""
    await device_release_driver(dev)
    await pci_remove_resource_files(_pdev(dev))
    await device_del(dev)
    put_device(dev)


async def pci_rescan_bus(kernel: Kernel) -> None:
    """pci_rescan_bus() under pci_lock_rescan_remove(): add a device for every slot that has
    none, in slot order."""
    bus = pci_bus(kernel)
    async with bus.rescan_lock:
        present = {dev.name for dev in bus.devices}
        for slot in bus.slots:
            if slot.slot_name not in present:
                await device_add(PciDevice(kernel, slot))
