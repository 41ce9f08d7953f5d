"""This machine, recorded and mounted: the tree is the real one, unmodified tools see the same
machine, and the recorded drivers unbind and bind as the kernel's do.

What may differ from the real /sys, and why:

* :data:`COUNTERS`: files that change on their own (statistics, times, free memory), frozen
  in the recording; they are compared by mode and size only.
* :data:`COME_AND_GO`: devices that appear and vanish without anyone touching the machine's
  hardware: the anonymous backing devices of mounts (``0:N``), one for every FUSE mount,
  this test's own included, and the network devices of containers.
* The tree fakesys adds: the ``hotplug`` bus and the ``devcoredump`` class are its own.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakesys.harness import FakesysMount
from fakesys.kernel.replay import DirRecord
from fakesys.record import SKIPPED, load

from .conftest import fakesys_command, fuse_usable

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")

ROOTS = ("block", "bus", "class", "dev", "devices", "module")
COUNTERS = (
    # runtime PM's and wakeup sources' accounting (drivers/base/power/sysfs.c, wakeup_stats.c)
    "*/power/runtime_active_time",
    "*/power/runtime_suspended_time",
    "*/power/wakeup_*count",
    "*/power/wakeup_*_ms",
    "*/power/wakeup_active",
    "*/wakeup*/active_count",
    "*/wakeup*/event_count",
    "*/wakeup*/*_time_ms",
    # cpuidle statistics (drivers/cpuidle/sysfs.c)
    "*/cpuidle/state*/time",
    "*/cpuidle/state*/usage",
    "*/cpuidle/state*/above",
    "*/cpuidle/state*/below",
    "*/cpuidle/state*/rejected",
    "*/cpuidle/state*/s2idle/*",
    # memory counters of a NUMA node (drivers/base/node.c)
    "devices/system/node/node*/meminfo",
    "devices/system/node/node*/numastat",
    "devices/system/node/node*/vmstat",
    "devices/system/node/node*/hugepages/*/free_hugepages",
    # a backing device's share of the dirty limit, which follows free memory (mm/backing-dev.c)
    "devices/virtual/bdi/*/max_bytes",
    "devices/virtual/bdi/*/min_bytes",
    # block I/O statistics (block/genhd.c, zram)
    "devices/*/block/*/stat",
    "devices/*/block/*/inflight",
    "devices/*/block/*/*/stat",
    "devices/*/block/*/*/inflight",
    "devices/virtual/block/*/*_stat",
    # network statistics and queue limits (net/core/net-sysfs.c)
    "devices/*/net/*/statistics/*",
    "devices/*/net/*/carrier_*",
    "devices/*/net/*/queues/*/byte_queue_limits/*",
    "devices/*/net/*/queues/*/tx_timeout",
    # CPU frequency (drivers/cpufreq/cpufreq.c, cpufreq_stats.c)
    "devices/system/cpu/cpu*/cpufreq/scaling_cur_freq",
    "devices/system/cpu/cpufreq/policy*/scaling_cur_freq",
    "devices/system/cpu/cpufreq/policy*/stats/*",
    # a loadable module's users (each FUSE mount holds fuse's)
    "module/*/refcnt",
    # free page reporting's statistics, as module parameters (mm/page_reporting.c)
    "module/page_reporting/parameters/passes",
    "module/page_reporting/parameters/reported_kib",
    "module/page_reporting/parameters/walked",
    # sensors and clocks
    "devices/*/hwmon/hwmon*/*_input",
    "devices/virtual/thermal/thermal_zone*/temp",
    "devices/*/rtc/rtc*/date",
    "devices/*/rtc/rtc*/time",
    "devices/*/rtc/rtc*/since_epoch",
    "devices/*/power_supply/*/*_now",
)
COME_AND_GO = (
    # the backing device of each mount of a FUSE (or other nodev) file system
    "devices/virtual/bdi/0:*",
    "class/bdi/0:*",
    # a container engine's bridge and the veth pair of each container
    "devices/virtual/net/podman*",
    "devices/virtual/net/veth*",
    "class/net/podman*",
    "class/net/veth*",
)
FAKESYS_OWN = ("bus/hotplug", "bus/hotplug/*", "class/devcoredump", "class/devcoredump/*")

Snapshot = dict[str, tuple[object, ...]]


def snapshot(sysfs: Path, top: str) -> Snapshot:
    """Every directory, file and link below ``sysfs/top``: mode, size, and contents (the
    errno of a failed read) or target. Files whose read has effects are not read."""
    found: Snapshot = {}
    for directory, dirs, files in os.walk(sysfs / top):
        for name in dirs + files:
            path = Path(directory, name)
            relative = str(path.relative_to(sysfs))
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                found[relative] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[relative] = ("dir", st.st_mode)
            else:
                found[relative] = (st.st_mode, st.st_size, _contents(path, relative, st))
    return found


def _contents(path: Path, relative: str, st: os.stat_result) -> object:
    if not st.st_mode & 0o444 or any(p.match(relative) for p in SKIPPED):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        return f"open: {e.strerror}"
    try:
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
        return data
    except OSError as e:
        return f"read: {e.strerror}"
    finally:
        os.close(fd)


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def differences(real: Snapshot, fake: Snapshot) -> list[str]:
    found = []
    for path in sorted(set(real) | set(fake)):
        if path not in real or path not in fake:
            if not _matches(path, COME_AND_GO + FAKESYS_OWN):
                found.append(f"{path}: only in the {'mount' if path in fake else 'machine'}")
            continue
        left, right = real[path], fake[path]
        if _matches(path, COUNTERS):
            left, right = left[:2], right[:2]
        if left != right:
            found.append(f"{path}: {str(left)[:200]} != {str(right)[:200]}")
    return found


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, FakesysMount]]:
    """This whole machine, recorded, and the recording mounted."""
    tmp = tmp_path_factory.mktemp("machine")
    recording = tmp / "machine.toml"
    out = fakesys_command("record", "-o", str(recording))
    assert out.returncode == 0, out.stderr
    mount = FakesysMount.start(tmp / "mnt", str(recording), tmp / "daemon.stderr")
    try:
        yield recording, mount
    finally:
        mount.stop()


@pytest.mark.parametrize("top", ROOTS)
def test_every_file_and_link_is_the_real_one(machine: tuple[Path, FakesysMount], top: str) -> None:
    _, mount = machine
    real = snapshot(Path("/sys"), top)
    assert real, f"/sys/{top} is empty"
    assert differences(real, snapshot(mount / "sys", top)) == []


def test_lspci_prints_what_it_prints_on_this_machine(machine: tuple[Path, FakesysMount]) -> None:
    _, mount = machine
    command = ["lspci", "-k", "-nn", "-vv"]
    real = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    fake = subprocess.run(
        [*command, "-A", "linux-sysfs", "-O", f"sysfs.path={mount / 'sys/bus/pci'}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    if not real.stdout:
        pytest.skip("this machine has no PCI device")
    assert (fake.stdout, fake.stderr) == (real.stdout, real.stderr)


# What udevadm shows of the kernel's view of a device: the lines of the database that come
# from sysfs (P: path, M: name, R: number, U: subsystem, T: type, D: node kind, N: node, Q:
# disk sequence, V: driver), and the kernel's properties among its E: lines.
KERNEL_LINES = ("P:", "M:", "R:", "U:", "T:", "D:", "N:", "Q:", "V:")


def kernel_view(export_db: str) -> dict[str, list[str]]:
    devices = {}
    for block in export_db.strip().split("\n\n"):
        lines = block.splitlines()
        devpath = lines[0].removeprefix("P: ")
        try:
            uevent = Path(f"/sys{devpath}/uevent").read_text()
        except OSError:
            uevent = ""
        keys = {"DEVPATH", "SUBSYSTEM", "DRIVER"} | {
            line.split("=", 1)[0] for line in uevent.splitlines()
        }
        devices[devpath] = [
            line
            for line in lines
            if line.startswith(KERNEL_LINES)
            or (line.startswith("E: ") and line[3:].split("=", 1)[0] in keys)
        ]
    return devices


def test_udevadm_lists_the_recorded_devices_with_their_kernel_properties(
    machine: tuple[Path, FakesysMount],
) -> None:
    recording, _ = machine
    env = {**os.environ, "SYSTEMD_DEVICE_VERIFY_SYSFS": "0"}
    command = ["udevadm", "info", "--export-db"]
    real = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True, env=env)
    fake = fakesys_command("run", "--scenario", str(recording), "--", *command, env=env)
    assert fake.returncode == 0, fake.stderr
    real_devices, fake_devices = kernel_view(real.stdout), kernel_view(fake.stdout)
    assert len(real_devices) > 10
    for devpath in set(real_devices) | set(fake_devices):
        if _matches(devpath.removeprefix("/"), COME_AND_GO):
            continue
        assert fake_devices.get(devpath) == real_devices.get(devpath), devpath


def network_interface() -> tuple[str, Path]:
    """An interface of this machine made by a driver: its name and its device's directory."""
    for iface in sorted(os.listdir("/sys/class/net")):
        device = Path(f"/sys/class/net/{iface}/device")
        if (device / "driver").exists():
            return iface, device.resolve()
    pytest.skip("this machine has no network interface made by a driver")


def test_a_recorded_network_card_unbinds_and_binds_as_the_real_one(tmp_path: Path) -> None:
    iface, device = network_interface()
    recording = tmp_path / "nic.toml"
    out = fakesys_command("record", "-o", str(recording), f"/sys/class/net/{iface}")
    assert out.returncode == 0, out.stderr
    mount = FakesysMount.start(tmp_path / "mnt", str(recording), tmp_path / "daemon.stderr")
    try:
        top = str(device.relative_to("/sys"))
        assert differences(snapshot(Path("/sys"), top), snapshot(mount / "sys", top)) == []
        # the driver of the first bound device below the root owns what is below it
        parts = top.split("/")
        bound = next(
            "/".join(parts[:i])
            for i in range(2, len(parts) + 1)
            if os.path.lexists(mount / "sys" / "/".join(parts[:i]) / "driver")
        )
        script = f"""
            exec 3< sys/class/net/{iface}/address
            drv=$(readlink -f sys/{bound}/driver)
            echo -n {os.path.basename(bound)} > "$drv/unbind"
            cat <&3 2>&1 || true
            test -e sys/class/net/{iface} || echo gone
            grep -c DRIVER= sys/{bound}/uevent || true
            echo {os.path.basename(bound)} > "$drv/bind"
            readlink sys/class/net/{iface}
        """
        result = mount.sh(script)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "cat: -: No such device",
            "gone",
            "0",
            os.readlink(f"/sys/class/net/{iface}"),
        ]
    finally:
        mount.stop()


def test_recording_the_mounted_recording_gives_it_back(
    machine: tuple[Path, FakesysMount], tmp_path: Path
) -> None:
    """The mount shows every recorded entry as recorded, counters included, and only fakesys's
    own bus and class besides. (What comes and goes by itself may have come or gone between
    two directories of one recording, so that its link and its device disagree: it is left
    out.)"""
    recording, mount = machine
    again = tmp_path / "again.toml"
    out = fakesys_command("record", "--sysfs", str(mount / "sys"), "-o", str(again))
    assert out.returncode == 0, out.stderr
    first, second = load(str(recording)), load(str(again))
    assert "bus/hotplug" in second.dirs and "class/devcoredump" in second.dirs

    def machine_only(dirs: dict[str, DirRecord]) -> dict[str, DirRecord]:
        left_out = FAKESYS_OWN + COME_AND_GO
        return {
            path: DirRecord(
                d.mode,
                {n: e for n, e in d.entries.items() if not _matches(f"{path}/{n}", left_out)},
            )
            for path, d in dirs.items()
            if not _matches(path, left_out)
        }

    assert machine_only(second.dirs) == machine_only(first.dirs)
    assert second.driver_children == first.driver_children
