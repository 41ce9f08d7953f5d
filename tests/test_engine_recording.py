"""A recorded machine in the engine (no mount): the tree as recorded, and its drivers live."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import trio

from fakesys import scenario
from fakesys.kernel import Kernel
from fakesys.kernel.bus import bind_store, unbind_store
from fakesys.kernel.panic import TAINT_BAD_PAGE
from fakesys.kernel.replay import LinkRecord, Recording
from fakesys.kernfs import (
    DEFAULT_POLLMASK,
    POLL_CHANGED,
    Caller,
    ErrnoError,
    KernfsNode,
    NodeKind,
    OpenFile,
    open_file,
)
from fakesys.record import RecordingError
from fakesys.record import load as load_recording

VM = Path(__file__).parent / "scenarios" / "virtio-vm.toml"
NIC = "sys/devices/pci0000:00/0000:00:03.0"
DISK = "sys/devices/pci0000:00/0000:00:02.0"


async def booted(nursery: trio.Nursery, path: Path = VM) -> Kernel:
    return await scenario.boot(scenario.load(str(path)), nursery)


def node(kernel: Kernel, path: str) -> KernfsNode:
    kn = kernel.lookup(path)
    assert kn is not None, path
    return kn


async def opened(kernel: Kernel, path: str, flags: int = os.O_RDONLY) -> OpenFile:
    return await open_file(node(kernel, path), flags, Caller(os.getpid()))


async def read(kernel: Kernel, path: str, size: int = 4096) -> bytes:
    of = await opened(kernel, path)
    try:
        return await of.read(0, size)
    finally:
        await of.release()


async def write(kernel: Kernel, path: str, data: bytes, offset: int = 0) -> int:
    of = await opened(kernel, path, os.O_WRONLY)
    try:
        return await of.write(offset, data)
    finally:
        await of.release()


async def differences(kernel: Kernel, recording: Recording) -> list[str]:
    """Every recorded directory, file and link that the tree does not show as recorded."""
    found = []
    for path, record in recording.dirs.items():
        kn = kernel.lookup(f"sys/{path}")
        if kn is None or kn.kind is not NodeKind.DIR or kn.mode != record.mode:
            found.append(path)
            continue
        for name, entry in record.entries.items():
            child = kn.lookup(name)
            if isinstance(entry, LinkRecord):
                if child is None or child.kind is not NodeKind.LINK:
                    found.append(f"{path}/{name}")
                elif child.link_target() != entry.target:
                    found.append(f"{path}/{name} -> {child.link_target()}")
                continue
            if child is None or (child.mode, child.size) != (entry.mode, entry.size):
                found.append(f"{path}/{name}")
            elif entry.content is not None and entry.mode & 0o444:
                content = await read(kernel, f"sys/{path}/{name}", entry.size or 4096)
                if content != entry.content:
                    found.append(f"{path}/{name}: {content!r}")
    return found


async def test_the_tree_is_the_recorded_one(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    assert await differences(kernel, load_recording(str(VM))) == []
    # the driver core's own files and links, as the recording has them
    assert node(kernel, f"{NIC}/subsystem").link_target() == "../../../bus/pci"
    assert node(kernel, f"{NIC}/virtio2/net/eth0/device").link_target() == "../../../virtio2"
    assert node(kernel, "sys/dev/block/254:1").link_target() == (
        "../../devices/pci0000:00/0000:00:02.0/virtio1/block/vda/vda1"
    )
    # a partition has no device link; a class device has no bus attributes
    assert kernel.lookup(f"{DISK}/virtio1/block/vda/vda1/device") is None
    assert kernel.lookup(f"{DISK}/virtio1/block/vda/power") is None
    assert await read(kernel, f"{DISK}/virtio1/block/vda/uevent") == (
        b"MAJOR=254\nMINOR=0\nDEVNAME=vda\nDEVTYPE=disk\nDISKSEQ=9\n"
    )
    # a recorded device's node needs its driver's code: there is none in /dev
    assert kernel.lookup("dev/vda") is None


async def test_unbind_takes_away_what_the_driver_made_and_bind_brings_it_back(
    nursery: trio.Nursery,
) -> None:
    kernel = await booted(nursery)
    events: list[str] = []
    kernel.uevent_listeners.append(
        lambda env: events.append("{ACTION} {DEVPATH} {SUBSYSTEM}".format_map(dict(env)))
    )
    virtio_pci = kernel.buses["pci"].drivers["virtio-pci"]
    assert await unbind_store(virtio_pci, b"0000:00:03.0\n") == 13
    gone = [
        f"{NIC}/driver",
        f"{NIC}/virtio2",
        "sys/class/net/eth0",
        "sys/bus/virtio/devices/virtio2",
        "sys/bus/virtio/drivers/virtio_net/virtio2",
        "sys/bus/pci/drivers/virtio-pci/0000:00:03.0",
    ]
    assert [path for path in gone if kernel.lookup(path) is not None] == []
    assert b"DRIVER=" not in await read(kernel, f"{NIC}/uevent")
    assert events == [
        "remove /devices/pci0000:00/0000:00:03.0/virtio2/net/eth0 net",
        "unbind /devices/pci0000:00/0000:00:03.0/virtio2 virtio",
        "remove /devices/pci0000:00/0000:00:03.0/virtio2 virtio",
        "unbind /devices/pci0000:00/0000:00:03.0 pci",
    ]
    events.clear()
    assert await bind_store(virtio_pci, b"0000:00:03.0") == 12
    assert events == [
        "add /devices/pci0000:00/0000:00:03.0/virtio2 virtio",
        "add /devices/pci0000:00/0000:00:03.0/virtio2/net/eth0 net",
        "bind /devices/pci0000:00/0000:00:03.0/virtio2 virtio",
        "bind /devices/pci0000:00/0000:00:03.0 pci",
    ]
    assert await differences(kernel, load_recording(str(VM))) == []


async def test_a_disk_goes_with_its_partitions_and_its_links(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    events: list[str] = []
    kernel.uevent_listeners.append(lambda env: events.append(dict(env)["DEVPATH"]))
    await unbind_store(kernel.buses["virtio"].drivers["virtio_blk"], b"virtio1")
    for path in ("sys/block/vda", "sys/class/block/vda1", "sys/dev/block/254:0"):
        assert kernel.lookup(path) is None, path
    assert events[:2] == [
        "/devices/pci0000:00/0000:00:02.0/virtio1/block/vda/vda1",
        "/devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
    ]
    # the glue directory goes with its last device, and comes back with it
    assert kernel.lookup(f"{DISK}/virtio1/block") is None
    await bind_store(kernel.buses["virtio"].drivers["virtio_blk"], b"virtio1")
    assert node(kernel, "sys/block/vda").link_target() == (
        "../devices/pci0000:00/0000:00:02.0/virtio1/block/vda"
    )


async def test_an_open_attribute_of_a_removed_device_reads_enodev(
    nursery: trio.Nursery,
) -> None:
    kernel = await booted(nursery)
    address = await opened(kernel, f"{NIC}/virtio2/net/eth0/address")
    await unbind_store(kernel.buses["pci"].drivers["virtio-pci"], b"0000:00:03.0")
    with pytest.raises(ErrnoError) as excinfo:
        await address.read(0, 4096)
    assert excinfo.value.errno == errno.ENODEV
    await address.release()


async def test_recorded_files_keep_the_kernels_rules(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)

    async def errno_of(path: str) -> int:
        """The errno of an open and a read."""
        try:
            await read(kernel, path)
        except ErrnoError as e:
            return e.errno
        raise AssertionError(f"{path} was read")

    assert await errno_of(f"{NIC}/remove") == errno.EACCES  # write-only: EACCES at open
    assert await errno_of(f"{DISK}/power/autosuspend_delay_ms") == errno.EIO  # as recorded
    # a write is kept and shown back; a binary file changes in place, within its size
    assert await write(kernel, f"{DISK}/power/control", b"auto\n") == 5
    assert await read(kernel, f"{DISK}/power/control") == b"auto\n"
    assert await write(kernel, f"{NIC}/config", b"\x07\x05", 4) == 2
    config = await read(kernel, f"{NIC}/config")
    assert (len(config), config[:8]) == (64, bytes.fromhex("f41a411007051000"))
    of = await opened(kernel, f"{NIC}/config", os.O_WRONLY)
    with pytest.raises(ErrnoError) as excinfo:
        await of.write(64, b"\0")
    assert excinfo.value.errno == errno.EFBIG
    await of.release()
    # poll: changed until the first read, as kernfs_generic_poll() has it
    vendor = await opened(kernel, f"{NIC}/vendor")
    assert vendor.poll() == DEFAULT_POLLMASK | POLL_CHANGED
    await vendor.read(0, 4096)
    assert vendor.poll() == DEFAULT_POLLMASK
    await vendor.release()


async def test_a_recorded_driver_binds_only_its_devices_and_driver_override_rules(
    nursery: trio.Nursery,
) -> None:
    kernel = await booted(nursery)
    virtio_net = kernel.buses["virtio"].drivers["virtio_net"]
    virtio_blk = kernel.buses["virtio"].drivers["virtio_blk"]
    await unbind_store(virtio_blk, b"virtio1")
    with pytest.raises(ErrnoError) as excinfo:
        await bind_store(virtio_net, b"virtio1")
    assert excinfo.value.errno == errno.ENODEV
    # driver_override is live: with another name, the recorded driver no longer matches
    virtio_pci = kernel.buses["pci"].drivers["virtio-pci"]
    await unbind_store(virtio_pci, b"0000:00:03.0")
    assert await read(kernel, f"{NIC}/driver_override") == b"(null)\n"
    await write(kernel, f"{NIC}/driver_override", b"vfio-pci\n")
    assert await read(kernel, f"{NIC}/driver_override") == b"vfio-pci\n"
    with pytest.raises(ErrnoError) as excinfo:
        await bind_store(virtio_pci, b"0000:00:03.0")
    assert excinfo.value.errno == errno.ENODEV
    await write(kernel, f"{NIC}/driver_override", b"\n")
    assert await bind_store(virtio_pci, b"0000:00:03.0") == 12
    assert kernel.lookup(f"{NIC}/virtio2/net/eth0") is not None


COMPOSED = """
include = "{recording}"

[[module]]
name = "cdev_devm"

[[driver]]
name = "cdev_devm"
bus = "pci"
module = "cdev_devm"
policy = "devm"
node = "devm"
ids = [{{ vendor = 0x1af4, device = 0x1041 }}]

[[driver]]
name = "foo"
bus = "platform"

[[device]]
path = "/sys/devices/pci0000:00/0000:00:03.0"
driver = "cdev_devm"

[[device]]
path = "/sys/devices/pci0000:00/0000:00:02.0"
bind = false

[[device]]
bus = "platform"
name = "foo"
id = 0

[[device]]
bus = "hotplug"
id = 1
"""


async def test_a_scenario_adds_to_a_recording_and_gives_its_devices_other_drivers(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    composed = tmp_path / "composed.toml"
    composed.write_text(COMPOSED.format(recording=VM))
    kernel = await booted(nursery, composed)
    # the network card has the lifetime driver instead of virtio-pci, so no virtio2
    assert node(kernel, f"{NIC}/driver").link_target() == "../../../bus/pci/drivers/cdev_devm"
    assert kernel.lookup(f"{NIC}/virtio2") is None
    assert kernel.lookup("dev/devm0") is not None
    # the disk is left unbound; the simulated devices sit in the recorded tree
    assert kernel.lookup(f"{DISK}/driver") is None and kernel.lookup(f"{DISK}/virtio1") is None
    assert node(kernel, "sys/bus/platform/drivers/foo/foo.0").link_target() == (
        "../../../../devices/platform/foo.0"
    )
    assert kernel.lookup("sys/devices/hotplug1") is not None
    # and the lifetime bug is the devm one, on the recorded device
    devm = await opened(kernel, "dev/devm0", os.O_RDWR)
    await unbind_store(kernel.buses["pci"].drivers["cdev_devm"], b"0000:00:03.0")
    # through the stale file: the driver's data was devm, freed at unbind
    with pytest.raises(ErrnoError) as excinfo:
        await devm.read(0, 16)
    assert excinfo.value.errno == errno.ENODEV
    await devm.release()
    assert kernel.taint.test(TAINT_BAD_PAGE)
    assert "BUG: KASAN: slab-use-after-free in chardev_read+" in kernel.log.text()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('include = "nosuch.toml"\n', "s.toml: include: "),
        (f'include = "{VM}"\n[[device]]\npath = "/sys/devices/nosuch"\n',
         "s.toml: device[0].path: expected the path of a recorded device on a bus"),
        (f'include = "{VM}"\n[[device]]\npath = "/sys/devices/pci0000:00/0000:00:03.0"\n'
         'driver = "virtio_net"\n',
         "s.toml: device[0].driver: expected the name of a driver on bus 'pci'"),
        ('[recording]\nformat = 1\n[sys."devices"]\nx = { mode = "rw" }\n',
         's.toml: sys."devices".x: expected a file'),
        ('[recording]\nformat = 1\n[sys."devices"]\nx = { mode = 0o444, error = "EWHAT" }\n',
         's.toml: sys."devices".x: expected an errno name'),
        ('[recording]\nformat = 2\n', "s.toml: recording.format: expected format = 1"),
        ('[sys."devices"]\n', "s.toml: sys: a recording needs its [recording] table"),
    ],
)  # fmt: skip
def test_recording_errors_name_the_file_table_and_entry(text: str, message: str) -> None:
    with pytest.raises(scenario.ScenarioError) as excinfo:
        scenario.parse(text, "s.toml")
    assert str(excinfo.value).startswith(message)


def test_a_recording_that_is_not_toml_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[recording\n")
    with pytest.raises(RecordingError, match="not valid TOML"):
        load_recording(str(bad))


THERMO = Path(__file__).parent.parent / "examples" / "own-driver" / "thermo.py"
OWN_DRIVER = """
include = "{recording}"

[[module]]
name = "thermo"

[[driver]]
impl = "{driver}"
module = "thermo"
bus = "virtio"

[[device]]
path = "/sys/devices/pci0000:00/0000:00:03.0/virtio2"
driver = "thermo"
"""


async def test_a_users_driver_on_a_recorded_device_of_a_generic_bus(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    composed = tmp_path / "thermo.toml"
    composed.write_text(OWN_DRIVER.format(recording=VM, driver=THERMO))
    kernel = await booted(nursery, composed)
    virtio2 = f"{NIC}/virtio2"
    # virtio-pci still makes virtio2, which the user's driver binds instead of virtio_net
    assert node(kernel, f"{virtio2}/driver").link_target() == (
        "../../../../bus/virtio/drivers/thermo"
    )
    assert kernel.lookup(f"{virtio2}/net") is None
    # its hardware is in the control plane, and the driver's bug is there on this tree too
    assert await write(kernel, "sys/kernel/debug/fakesys/devices/virtio2/feed", b"41500") == 5
    assert await read(kernel, f"{virtio2}/temp1_input") == b"41500\n"
    await unbind_store(kernel.buses["virtio"].drivers["thermo"], b"virtio2")
    assert await read(kernel, f"{virtio2}/temp1_input") == b"41500\n"
    assert "BUG: KASAN: slab-use-after-free in thermo_temp_show+" in kernel.log.text()
