"""The PCI tree through a real mount, against this machine's own ``/sys/bus/pci``.

The fake's set of files comes from the kernel's rules (tests/test_engine_pci.py); here every
file it shares with a real device, driver or the bus must have the real one's type, mode, size
and format. A device's ``config`` size depends on the function (256, or 4096 for PCI Express
and host bridges), so it is checked against that rule on both sides instead.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from .conftest import Mount

GPU = "sys/bus/pci/devices/0000:00:02.0"
DRIVER = "sys/bus/pci/drivers/fakegpu"
REAL = Path("/sys/bus/pci")

# The format each text attribute has, fake or real (sysfs_emit() formats of pci-sysfs.c).
FORMATS = {
    "vendor": r"0x[0-9a-f]{4}\n",
    "device": r"0x[0-9a-f]{4}\n",
    "subsystem_vendor": r"0x[0-9a-f]{4}\n",
    "subsystem_device": r"0x[0-9a-f]{4}\n",
    "revision": r"0x[0-9a-f]{2}\n",
    "class": r"0x[0-9a-f]{6}\n",
    "irq": r"\d+\n",
    "resource": r"(0x[0-9a-f]{16} 0x[0-9a-f]{16} 0x[0-9a-f]{16}\n){7,}",
    "local_cpus": r"[0-9a-f,]+\n",
    "local_cpulist": r"[0-9,-]+\n",
    "modalias": r"pci:v[0-9A-F]{8}d[0-9A-F]{8}sv[0-9A-F]{8}sd[0-9A-F]{8}"
    r"bc[0-9A-F]{2}sc[0-9A-F]{2}i[0-9A-F]{2}\n",
    "numa_node": r"-?\d+\n",
    "dma_mask_bits": r"\d+\n",
    "consistent_dma_mask_bits": r"\d+\n",
    "enable": r"\d+\n",
    "broken_parity_status": r"[01]\n",
    "msi_bus": r"[01]\n",
    "d3cold_allowed": r"[01]\n",
    "driver_override": r".+\n",
    "ari_enabled": r"[01]\n",
    "power_state": r"(D0|D1|D2|D3hot|D3cold|unknown|error)\n",
    "boot_vga": r"[01]\n",
    "current_link_speed": r"(Unknown|[\d.]+ GT/s( PCIe)?)\n",
    "current_link_width": r"\d+\n",
    "max_link_speed": r"(Unknown|[\d.]+ GT/s( PCIe)?)\n",
    "max_link_width": r"\d+\n",
    "power/control": r"(auto|on)\n",
    "power/runtime_status": r"(unsupported|active|suspended|suspending|resuming|error)\n",
    "power/runtime_active_time": r"\d+\n",
    "power/runtime_suspended_time": r"\d+\n",
}


def entries(top: Path) -> dict[str, os.stat_result]:
    """The files and directories of ``top`` and of its ``power/``."""
    found = {p.name: os.lstat(p) for p in top.iterdir()}
    if (top / "power").is_dir():
        found |= {f"power/{p.name}": os.lstat(p) for p in (top / "power").iterdir()}
    return found


def real_devices() -> list[Path]:
    devices = sorted(p.resolve() for p in (REAL / "devices").iterdir()) if REAL.is_dir() else []
    if not devices:
        pytest.skip("this machine has no PCI device")
    return devices


def is_pcie_or_host_bridge(config: bytes, cls: str) -> bool:
    """pci_cfg_space_size(): the extended space exists for PCI Express functions (a 0x10
    capability) and is probed for host bridges."""
    if cls.startswith("0x0600"):
        return True
    if not config[0x06] & 0x10:
        return False
    offset, seen = config[0x34], 0
    while offset and seen < 48:
        if config[offset] == 0x10:
            return True
        offset, seen = config[offset + 1], seen + 1
    return False


def check_formats(top: Path) -> None:
    for name, pattern in FORMATS.items():
        path = top / name
        if path.exists():
            try:
                text = path.read_text()
            except OSError:
                continue  # a real show may fail (the link attributes of a device gone to D3)
            assert re.fullmatch(pattern, text), (path, text)
    config = (top / "config").read_bytes()
    expected = 4096 if is_pcie_or_host_bridge(config, (top / "class").read_text()) else 256
    assert os.lstat(top / "config").st_size == expected, top
    assert len(config) == expected, top


def same_node(fake: os.stat_result, real: os.stat_result, what: str) -> None:
    assert stat.S_IFMT(fake.st_mode) == stat.S_IFMT(real.st_mode), what
    assert stat.S_IMODE(fake.st_mode) == stat.S_IMODE(real.st_mode), what
    if stat.S_ISREG(fake.st_mode):
        assert fake.st_size == real.st_size, what


def test_device_files_match_this_machines_devices(mount: Mount) -> None:
    fake_dir = mount.path / GPU
    fake = entries(fake_dir)
    check_formats(fake_dir)
    for top in real_devices():
        check_formats(top)
        real = entries(top)
        for name in (set(fake) & set(real)) - {"config"}:
            same_node(fake[name], real[name], f"{top}/{name}")
        # power/ has the same set everywhere: the runtime group of dpm_sysfs_add()
        assert {n for n in fake if n.startswith("power/")} == {
            n for n in real if n.startswith("power/")
        }, top


def test_driver_and_bus_files_match_this_machine(mount: Mount) -> None:
    real_drivers = sorted((REAL / "drivers").iterdir()) if REAL.is_dir() else []
    if not real_drivers:
        pytest.skip("this machine has no PCI driver")
    fake = entries(mount.path / DRIVER)
    fake_files = {n for n, s in fake.items() if not stat.S_ISLNK(s.st_mode)}
    assert fake_files == {"bind", "new_id", "remove_id", "uevent", "unbind"}
    for top in real_drivers:
        real = entries(top)
        assert {n for n, s in real.items() if not stat.S_ISLNK(s.st_mode)} == fake_files, top
        for name in fake_files:
            same_node(fake[name], real[name], f"{top}/{name}")
    fake_bus = entries(mount.path / "sys/bus/pci")
    real_bus = entries(REAL)
    assert set(fake_bus) == set(real_bus)
    for name in fake_bus:
        same_node(fake_bus[name], real_bus[name], f"bus/pci/{name}")
    # the root bus's class device
    fake_root = entries(mount.path / "sys/devices/pci0000:00/pci_bus/0000:00")
    real_root = entries(Path("/sys/devices/pci0000:00/pci_bus/0000:00"))
    if real_root:
        assert set(fake_root) == set(real_root)
        for name in fake_root:
            same_node(fake_root[name], real_root[name], f"pci_bus/0000:00/{name}")


def test_lspci_decodes_the_capability_list(mount: Mount) -> None:
    out = mount.sh("lspci -vvv -s 00:02.0 -A linux-sysfs -O sysfs.path=sys/bus/pci", check=True)
    text = out.stdout
    assert "Status: Cap+" in text
    assert "Capabilities: [40] Power Management version 3" in text
    assert "Capabilities: [50] MSI: Enable- Count=1/1 Maskable- 64bit+" in text
    assert "Capabilities: [70] Express (v2) Root Complex Integrated Endpoint" in text
    assert "Region 0: Memory at fd000000 (32-bit, prefetchable) [size=16M]" in text
    assert "Control: I/O- Mem+ BusMaster+" in text
    assert "<chain broken>" not in text and "<?>" not in text
