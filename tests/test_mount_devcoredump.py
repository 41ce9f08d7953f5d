"""devcoredump through a real mount, driven the way real dump collectors drive it."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import Mount, wait_until

CTL = "sys/kernel/debug/fakesys"
CLASS = "sys/class/devcoredump"
DUMP_SIZE = 1 << 20


def expected_binary_dump(size: int) -> bytes:
    """The documented binary pattern: byte i is (i % 4093) * 31 % 256."""
    return bytes((i % 4093) * 31 % 256 for i in range(size))


def dump(mount: Mount, device: str) -> None:
    path = f"sys/bus/platform/devices/{device}/coredump"
    if device.startswith("0000:"):
        path = f"sys/bus/pci/devices/{device}/coredump"
    mount.sh(f"echo 1 > {path}", check=True)


def dumps(mount: Mount) -> list[str]:
    return sorted(p.name for p in (mount.path / CLASS).iterdir() if p.name.startswith("devcd"))


def gone(mount: Mount, name: str) -> bool:
    return wait_until(lambda: name not in dumps(mount))


def test_dump_layout_modes_and_links(mount: Mount) -> None:
    dev = mount.path / "sys/devices/platform/dump_fixed.0"
    assert stat.S_IMODE(os.lstat(dev / "coredump").st_mode) == 0o200
    assert not (mount.path / "sys/devices/platform/foo.0/coredump").exists()  # cannot dump
    dump(mount, "dump_fixed.0")
    assert dumps(mount) == ["devcd1"]
    devcd = mount.path / "sys/devices/virtual/devcoredump/devcd1"
    data = os.lstat(devcd / "data")
    assert (stat.S_IMODE(data.st_mode), data.st_size) == (0o600, 0)
    assert sorted(os.listdir(devcd)) == ["data", "failing_device", "power", "subsystem", "uevent"]
    assert os.readlink(devcd / "failing_device") == "../../../platform/dump_fixed.0"
    assert os.readlink(devcd / "subsystem") == "../../../../class/devcoredump"
    assert os.readlink(mount.path / CLASS / "devcd1") == "../../devices/virtual/devcoredump/devcd1"
    assert os.readlink(dev / "devcoredump") == "../../virtual/devcoredump/devcd1"
    assert (devcd / "uevent").read_text() == ""
    # a second dump of the same device while one exists is dropped
    dump(mount, "dump_fixed.0")
    assert dumps(mount) == ["devcd1"]
    # the coredump attribute is there only while a driver is bound
    mount.sh("echo dump_fixed.0 > sys/bus/platform/drivers/dump_fixed/unbind", check=True)
    assert not (dev / "coredump").exists()


def test_chromeos_crash_reporter_pattern(mount: Mount, tmp_path: Path) -> None:
    """udev_collector: DRIVER= from failing_device/uevent, O_RDONLY|O_NOFOLLOW on data,
    stream to a file, then free the dump with an O_TRUNC write of "0"."""
    dump(mount, "dump_fixed.0")
    out = tmp_path / "devcore"
    client = mount.python(
        f"""
        import os
        base = "{CLASS}/devcd1/"
        with open(base + "failing_device/uevent") as f:
            driver = dict(l.rstrip("\\n").split("=", 1) for l in f)["DRIVER"]
        fd = os.open(base + "data", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with open("{out}", "wb") as sink:
            while chunk := os.read(fd, 65536):
                sink.write(chunk)
        os.close(fd)
        fd = os.open(base + "data", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, b"0")
        os.close(fd)
        print(driver)
        """
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout == "dump_fixed\n"
    digest = hashlib.sha256(expected_binary_dump(DUMP_SIZE)).hexdigest()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert gone(mount, "devcd1")


def test_igt_msm_pattern_reads_pages_and_writes_on_the_same_fd(mount: Mount) -> None:
    dump(mount, "dump_fixed.0")
    client = mount.python(
        f"""
        import glob, os
        (path,) = glob.glob("{CLASS}/devcd*/data")
        fd = os.open(path, os.O_RDWR)
        sizes = []
        while chunk := os.read(fd, 1 << 20):
            sizes.append(len(chunk))
        print(max(sizes), sum(sizes))
        print(os.write(fd, b""), os.path.exists(path))  # a zero-length write deletes nothing
        print(os.write(fd, b"1"))
        os.close(fd)
        """
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout.split("\n")[:3] == [f"4096 {DUMP_SIZE}", "0 True", "1"]
    assert gone(mount, "devcd1")


def test_xe_backlink_pattern_and_a_held_fd_after_deletion(mount: Mount) -> None:
    dump(mount, "0000:00:02.0")
    client = mount.python(
        """
        import errno, os
        path = "sys/bus/pci/devices/0000:00:02.0/devcoredump/data"
        with open(path) as f:
            header = [next(f).rstrip("\\n") for _ in range(2)]
        held = os.open(path, os.O_RDONLY)
        with open(path, "w") as f:
            f.write("1\\n")
        import time
        for _ in range(100):
            if not os.path.exists(path):
                break
            time.sleep(0.02)
        try:
            open(path)
        except FileNotFoundError:
            print("gone")
        try:
            os.read(held, 10)
        except OSError as e:
            print(errno.errorcode[e.errno])
        os.close(held)
        print(*header, sep="\\n")
        """
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout.split("\n")[:4] == [
        "gone",
        "ENODEV",
        "kernel: 6.18.0-fakesys",
        "module: fakegpu",
    ]


def test_igt_drop_devcoredump_walk_finds_bound_devices_as_links(mount: Mount) -> None:
    dump(mount, "dump_fixed.0")
    client = mount.python(
        """
        import os
        drv = "sys/bus/platform/drivers/dump_fixed"
        for entry in os.scandir(drv):
            if entry.is_symlink() and os.access(f"{drv}/{entry.name}/devcoredump", os.F_OK):
                with open(f"{drv}/{entry.name}/devcoredump/data", "w") as f:
                    f.write("1\\n")
                print(entry.name)
        """
    )
    assert client.returncode == 0, client.stderr
    assert client.stdout == "dump_fixed.0\n"
    assert gone(mount, "devcd1")


def test_timeout_on_the_engine_clock(mount: Mount) -> None:
    dump(mount, "dump_fixed.0")  # five minutes
    dump(mount, "0000:00:02.0")  # one hour, like Xe
    mount.sh(f"echo 299 > {CTL}/advance_clock", check=True)
    assert dumps(mount) == ["devcd1", "devcd2"]
    mount.sh(f"echo 1 > {CTL}/advance_clock", check=True)
    assert dumps(mount) == ["devcd2"]
    mount.sh(f"echo 3300 > {CTL}/advance_clock", check=True)
    assert dumps(mount) == []
    # numbers are never reused
    dump(mount, "dump_fixed.0")
    assert dumps(mount) == ["devcd3"]


def test_disabled_is_a_one_way_switch(mount: Mount) -> None:
    disabled = f"{CLASS}/disabled"
    assert mount.read(disabled) == "0\n"
    assert "Invalid argument" in mount.sh(f"echo 0 > {disabled}").stderr
    dump(mount, "dump_fixed.0")
    dump(mount, "dump_legacy.0")
    mount.sh(f"echo 1abc > {disabled}", check=True)  # simple_strtol stops at the letters
    assert mount.read(disabled) == "1\n"
    assert dumps(mount) == []
    dump(mount, "dump_fixed.0")
    assert dumps(mount) == []
    mount.sh(f"echo 1 > {disabled}", check=True)
    assert mount.read("sys/module/dump_legacy/refcnt") == "0\n"


def test_legacy_read_after_unbind_uses_freed_state_and_pins_the_module(mount: Mount) -> None:
    dump(mount, "dump_legacy.0")
    assert mount.read("sys/module/dump_legacy/refcnt") == "1\n"
    mount.sh("echo dump_legacy.0 > sys/bus/platform/drivers/dump_legacy/unbind", check=True)
    assert dumps(mount) == ["devcd1"]  # nothing removes it
    data = (mount.path / CLASS / "devcd1/data").read_bytes()
    assert data == expected_binary_dump(DUMP_SIZE)  # the stale snapshot is still read
    headers = [line for line in mount.kmsg_text() if line.startswith("BUG: KASAN")]
    assert headers[0].startswith("BUG: KASAN: slab-use-after-free in dump_legacy_coredump_read+")
    assert mount.read("proc/sys/kernel/tainted") == "32\n"
    rmmod = f"echo dump_legacy > {CTL}/delete_module"
    assert "Resource temporarily unavailable" in mount.sh(rmmod).stderr
    mount.sh(f"echo 1 > {CLASS}/devcd1/data", check=True)
    assert gone(mount, "devcd1")
    assert mount.read("sys/module/dump_legacy/refcnt") == "0\n"
    mount.sh(rmmod, check=True)


def lock_cycle(mount: Mount, era: str) -> list[str]:
    """A write deletes one dump; the next is deleted by dev_coredump_put() at unbind."""
    device = f"sys/devices/platform/dump_{era}.0"
    dump(mount, f"dump_{era}.0")
    mount.sh(f"echo 1 > {device}/devcoredump/data", check=True)
    assert gone(mount, "devcd1")
    dump(mount, f"dump_{era}.0")
    assert dumps(mount) == ["devcd2"]
    mount.sh(f"echo dump_{era}.0 > sys/bus/platform/drivers/dump_{era}/unbind", check=True)
    assert dumps(mount) == []  # deleted by the unbind, synchronously
    return mount.kmsg_text()


def test_put_era_lock_cycle_is_reported_with_its_three_chains(mount: Mount) -> None:
    text = lock_cycle(mount, "put")
    start = text.index("WARNING: possible circular locking dependency detected")
    report = text[start:]
    assert report[3].startswith("bash/") and report[3].endswith(" is trying to acquire lock:")
    assert report[4].startswith(
        "((work_completion)(&(&devcd->del_wk)->work)), at: flush_delayed_work+"
    )
    assert report[7].startswith("(&devcd->mutex), at: devcd_free+")
    chains = [line for line in report if line.startswith("-> #")]
    assert chains == [
        "-> #2 (kn->active#4):",
        "-> #1 (&devcd->mutex):",
        "-> #0 ((work_completion)(&(&devcd->del_wk)->work)):",
    ]

    def chain(number: int) -> str:
        begin = report.index(chains[2 - number])
        return " ".join(report[begin : begin + 16])

    assert "kernfs_drain" in chain(2) and "devcd_del" in chain(2)
    assert "devcd_data_write" in chain(1) and "kernfs_fop_write_iter" in chain(1)
    assert "dev_coredump_put" in chain(0) and "unbind_store" in chain(0)
    assert " *** DEADLOCK ***" in report
    held = report.index(" *** DEADLOCK ***") + 2
    assert report[held].startswith("1 lock held by bash/")
    assert report[held + 1].startswith(" #0: (&devcd->mutex), at: devcd_free+")
    assert mount.read("proc/sys/kernel/tainted") == "0\n"  # lockdep does not taint


def test_fixed_era_same_sequence_is_clean(mount: Mount) -> None:
    text = lock_cycle(mount, "fixed")
    assert not any("circular locking" in line for line in text)


def test_seed_patch_loses_the_dump_of_a_recovering_driver(mount: Mount) -> None:
    """Johannes Berg's objection: unbind+bind to recover deletes the dump just taken."""
    drivers = "sys/bus/platform/drivers"
    recover = f"echo {{0}}.0 > {drivers}/{{0}}/unbind; echo {{0}}.0 > {drivers}/{{0}}/bind"
    dump(mount, "dump_seed.0")
    assert dumps(mount) == ["devcd1"]
    mount.sh(recover.format("dump_seed"), check=True)
    assert gone(mount, "devcd1")
    # the same recovery on the unpatched core (a driver that does not put its dumps) keeps it
    mount.sh(f"echo 1 > {CTL}/kasan_multi_shot", check=True)
    dump(mount, "dump_legacy.0")
    mount.sh(recover.format("dump_legacy"), check=True)
    # nothing is queued to remove it: advancing past any deferred work leaves it there
    mount.sh(f"echo 1 > {CTL}/advance_clock", check=True)
    assert dumps(mount) == ["devcd2"]


def test_uevent_helper_gets_the_add_event(mount: Mount, tmp_path: Path) -> None:
    log = tmp_path / "events"
    helper = tmp_path / "helper.sh"
    helper.write_text(f'#!/bin/sh\necho "$1 $ACTION $DEVPATH $SEQNUM" >> {log}\n')
    helper.chmod(0o755)
    mount.sh(f"echo {helper} > sys/kernel/uevent_helper", check=True)
    assert mount.read("sys/kernel/uevent_helper") == f"{helper}\n"
    before = int(mount.read("sys/kernel/uevent_seqnum"))
    dump(mount, "dump_fixed.0")
    assert wait_until(lambda: log.exists() and "devcoredump add" in log.read_text())
    line = next(x for x in log.read_text().splitlines() if x.startswith("devcoredump add"))
    assert line.split()[2] == "/devices/virtual/devcoredump/devcd1"
    assert int(line.split()[3]) > before
    mount.sh("echo > sys/kernel/uevent_helper", check=True)


MONITOR = textwrap.dedent(
    """
    import os, sys
    fd = os.open(sys.argv[1], os.O_RDONLY)
    print("listening", flush=True)
    for _ in range(int(sys.argv[2])):
        sys.stdout.write(os.read(fd, 65536).decode())
    sys.stdout.flush()
    """
)


def test_monitor_stream_shows_add_bind_unbind_remove_in_order(mount: Mount) -> None:
    monitor = subprocess.Popen(
        [sys.executable, "-c", MONITOR, f"{CTL}/uevents", "4"],
        cwd=mount.path,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert monitor.stdout is not None
    assert monitor.stdout.readline() == "listening\n"
    dump(mount, "dump_fixed.0")
    mount.sh("echo foo.0 > sys/bus/platform/drivers/foo/unbind", check=True)
    mount.sh("echo foo.0 > sys/bus/platform/drivers/foo/bind", check=True)
    mount.sh(f"echo 1 > {CLASS}/devcd1/data", check=True)
    out, _ = monitor.communicate(timeout=20)
    events = [block.split("\n") for block in out.strip().split("\n\n")]
    heads = [e[0].split("] ", 1)[1] for e in events]
    assert heads == [
        "add      /devices/virtual/devcoredump/devcd1 (devcoredump)",
        "unbind   /devices/platform/foo.0 (platform)",
        "bind     /devices/platform/foo.0 (platform)",
        "remove   /devices/virtual/devcoredump/devcd1 (devcoredump)",
    ]
    assert events[0][0].startswith("KERNEL[")
    assert events[0][1:4] == [
        "ACTION=add",
        "DEVPATH=/devices/virtual/devcoredump/devcd1",
        "SUBSYSTEM=devcoredump",
    ]
    assert events[0][-1].startswith("SEQNUM=")
    assert "DRIVER=foo" in events[2]
    assert not any(line.startswith("MODALIAS") for line in events[1])  # zapped on unbind


def test_put_era_write_racing_with_unbind_is_reported_and_everyone_returns(
    mount: Mount,
) -> None:
    """The interleaving of the 2025 fix's splat: unbind holds devcd->mutex and flushes the
    deletion work while a write to data holds the attribute and wants the mutex."""
    dump(mount, "dump_put.0")
    mount.sh(f"echo 1 > {CTL}/hold/devcd_free", check=True)
    unbind = subprocess.Popen(
        ["bash", "-c", "echo dump_put.0 > sys/bus/platform/drivers/dump_put/unbind"],
        cwd=mount.path,
    )
    assert wait_until(lambda: mount.read(f"{CTL}/hold/devcd_free") == "held\n")
    writer = mount.sh(f"echo 1 > {CLASS}/devcd1/data")  # would hang on a real kernel
    assert writer.returncode == 0
    mount.sh(f"echo 0 > {CTL}/hold/devcd_free", check=True)
    assert unbind.wait(timeout=10) == 0
    assert dumps(mount) == []
    text = mount.kmsg_text()
    assert "WARNING: possible circular locking dependency detected" in text
    chains = {line.split(" ", 2)[2] for line in text if line.startswith("-> #")}
    assert chains == {
        "(kn->active#4):",
        "(&devcd->mutex):",
        "((work_completion)(&(&devcd->del_wk)->work)):",
    }
