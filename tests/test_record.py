"""``fakesys record``: what is read and how it is written down, on a tree made here and on
this machine's /sys."""

from __future__ import annotations

import errno
import tomllib
from pathlib import Path

import pytest

from fakesys.kernel.replay import FileRecord, LinkRecord
from fakesys.record import dumps, guess_driver_children, loads, record

from .conftest import fakesys_command

NIC = "devices/pci0000:00/0000:00:03.0"
CONFIG = bytes(range(64))

# A small tree laid out like sysfs: path -> text, bytes, or ("link", target).
TREE: dict[str, str | bytes | tuple[str, str]] = {
    "devices/pci0000:00/uevent": "",
    "devices/pci0000:00/pci_bus/0000:00/uevent": "",
    "devices/pci0000:00/pci_bus/0000:00/subsystem": ("link", "../../../../class/pci_bus"),
    f"{NIC}/uevent": "DRIVER=virtio-pci\nPCI_SLOT_NAME=0000:00:03.0\n",
    f"{NIC}/vendor": "0x1af4\n",
    f"{NIC}/config": CONFIG,
    f"{NIC}/resource0": "registers",
    f"{NIC}/remove": "",
    f"{NIC}/driver": ("link", "../../../bus/pci/drivers/virtio-pci"),
    f"{NIC}/subsystem": ("link", "../../../bus/pci"),
    f"{NIC}/power/control": "on\n",
    f"{NIC}/loop": ("link", "."),
    f"{NIC}/virtio2/uevent": "DRIVER=virtio_net\n",
    f"{NIC}/virtio2/subsystem": ("link", "../../../../bus/virtio"),
    f"{NIC}/virtio2/driver": ("link", "../../../../bus/virtio/drivers/virtio_net"),
    f"{NIC}/virtio2/net/eth0/uevent": "INTERFACE=eth0\n",
    f"{NIC}/virtio2/net/eth0/subsystem": ("link", "../../../../../../class/net"),
    f"{NIC}/virtio2/net/eth0/dev": "10:1\n",
    f"{NIC}/virtio2/net/eth0/address": "52:54:00:12:34:56\n",
    "devices/pci0000:00/0000:00:02.0/uevent": "PCI_SLOT_NAME=0000:00:02.0\n",
    "devices/pci0000:00/0000:00:02.0/subsystem": ("link", "../../../bus/pci"),
    "bus/pci/drivers_autoprobe": "1\n",
    "bus/pci/slots/1/address": "0000:00:03\n",
    "bus/pci/devices/0000:00:02.0": ("link", "../../../devices/pci0000:00/0000:00:02.0"),
    "bus/pci/devices/0000:00:03.0": ("link", f"../../../{NIC}"),
    "bus/pci/drivers/virtio-pci/bind": "",
    "bus/pci/drivers/virtio-pci/0000:00:03.0": ("link", f"../../../../{NIC}"),
    "bus/pci/drivers/other/bind": "",
    "bus/virtio/devices/virtio2": ("link", f"../../../{NIC}/virtio2"),
    "bus/virtio/drivers/virtio_net/module": ("link", "../../../../module/virtio_net"),
    "bus/virtio/drivers/virtio_net/virtio2": ("link", f"../../../../{NIC}/virtio2"),
    "class/net/eth0": ("link", f"../../{NIC}/virtio2/net/eth0"),
    "class/net/lo": ("link", "../../devices/virtual/net/lo"),
    "class/zram-control/hot_add": "0\n",
    "dev/char/10:1": ("link", f"../../{NIC}/virtio2/net/eth0"),
    "dev/char/1:3": ("link", "../../devices/virtual/mem/null"),
    "module/virtio_net/parameters/napi_tx": "Y\n",
    "module/virtio_pci/version": "1\n",
    "module/other/version": "2\n",
}
MODES = {f"{NIC}/remove": 0o220, "class/zram-control/hot_add": 0o400}


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    for path, content in TREE.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, tuple):
            target.symlink_to(content[1])
        else:
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
            target.chmod(MODES.get(path, 0o444))
    (root / "bus/pci/slots/2").mkdir()  # an empty directory is recorded too
    return root


def test_the_whole_tree_is_recorded_without_following_links(sysfs: Path) -> None:
    recording = record(sysfs=str(sysfs))
    nic = recording.dirs[NIC].entries
    assert nic["vendor"] == FileRecord(0o444, 7, b"0x1af4\n")
    assert nic["config"] == FileRecord(0o444, 64, CONFIG)
    assert nic["loop"] == LinkRecord(".")  # a loop, recorded as its target
    assert nic["remove"] == FileRecord(0o220, 0)  # write-only: never opened
    # reads with effects are not done: a PCI BAR, zram's hot_add
    assert nic["resource0"] == FileRecord(0o444, 9)
    assert recording.dirs["class/zram-control"].entries["hot_add"] == FileRecord(0o400, 2)
    assert "bus/pci/slots/2" in recording.dirs
    assert list(recording.dirs) == sorted(recording.dirs)


def test_the_format_is_toml_one_line_per_entry_and_lossless(sysfs: Path) -> None:
    recording = record(sysfs=str(sysfs))
    text = dumps(recording)
    assert f'[sys."{NIC}"]\n' in text
    assert 'vendor = { mode = 0o444, size = 7, text = "0x1af4\\n" }\n' in text
    assert f'config = {{ mode = 0o444, size = 64, hex = "{CONFIG.hex()}" }}\n' in text
    assert 'driver = { link = "../../../bus/pci/drivers/virtio-pci" }\n' in text
    again = loads(tomllib.loads(text), "r.toml")
    assert again.dirs == recording.dirs
    assert again.driver_children == recording.driver_children
    # every text and control character survives
    odd = FileRecord(0o644, 4096, 'tab\there "quoted" \\ \x1b \u00e9\n'.encode())
    recording.dirs[NIC].entries["odd"] = odd
    assert loads(tomllib.loads(dumps(recording)), "r.toml").dirs[NIC].entries["odd"] == odd


def test_a_device_is_recorded_with_its_parents_and_what_belongs_to_it(sysfs: Path) -> None:
    recording = record([str(sysfs / "class/net/eth0")], sysfs=str(sysfs))
    dirs = recording.dirs
    # its subtree and the devices above it, without their other children
    assert f"{NIC}/virtio2/net/eth0" in dirs and f"{NIC}/power" in dirs
    assert "devices/pci0000:00/0000:00:02.0" not in dirs
    assert "devices/pci0000:00/pci_bus" not in dirs  # a glue directory of a device not taken
    # its buses and class with the links to the recorded devices only; its drivers, modules
    assert list(dirs["bus/pci/devices"].entries) == ["0000:00:03.0"]
    assert "bus/pci/slots/1" in dirs and "bus/pci/drivers/other" not in dirs
    assert list(dirs["bus/pci/drivers/virtio-pci"].entries) == ["0000:00:03.0", "bind"]
    assert list(dirs["class/net"].entries) == ["eth0"]
    assert list(dirs["dev/char"].entries) == ["10:1"]
    assert "module/virtio_net/parameters" in dirs  # by the driver's module link
    assert "module/virtio_pci" in dirs  # a built-in driver's, by its name
    assert "module/other" not in dirs


def test_driver_children_are_guessed_from_the_tree(sysfs: Path) -> None:
    assert guess_driver_children(record(sysfs=str(sysfs))) == {
        f"{NIC}/virtio2",
        f"{NIC}/virtio2/net/eth0",
    }


def test_record_refuses_a_path_that_is_not_a_device(sysfs: Path, tmp_path: Path) -> None:
    out = fakesys_command("record", "--sysfs", str(sysfs), str(sysfs / "bus"))
    assert out.returncode == 2
    assert out.stderr == f"fakesys record: {sysfs}/bus: not a directory below {sysfs}/devices\n"


def test_this_machine_records_read_errors_and_a_device_by_its_class_link(
    tmp_path: Path,
) -> None:
    """Runtime PM's autosuspend_delay_ms fails with EIO for a device that does not use it,
    as /sys/devices/platform does not."""
    out = tmp_path / "platform.toml"
    result = fakesys_command("record", "-o", str(out), "/sys/devices/platform")
    assert result.returncode == 0, result.stderr
    recording = loads(tomllib.loads(out.read_text()), str(out))
    power = recording.dirs["devices/platform/power"].entries
    assert power["autosuspend_delay_ms"] == FileRecord(0o644, 4096, error=errno.EIO)
    assert recording.dirs["devices/platform"].entries["uevent"] == FileRecord(0o644, 4096, b"")


def test_overlapping_paths_record_the_union(sysfs: Path) -> None:
    host = "devices/pci0000:00"
    whole = record([str(sysfs / host)], sysfs=str(sysfs))
    both = record([str(sysfs / host), str(sysfs / "class/net/eth0")], sysfs=str(sysfs))
    assert both.dirs == whole.dirs
    assert f"{host}/pci_bus" in both.dirs  # a glue directory off the second path
