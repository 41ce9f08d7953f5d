"""devcoredump through a real mount, driven the way real dump collectors drive it."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import Mount, wait_until

CTL = "sys/kernel/debug/fakesys"
CLASS = "sys/class/devcoredump"
DUMP_SIZE = 1 << 20


def expected_binary_dump(size: int) -> bytes:
    """The documented binary pattern: byte i is (i % 4093) * 31 % 256."""
    return bytes((i % 4093) * 31 % 256 for i in range(size))


def dump(mount: Mount, device: str) -> None:
    """Make ``device`` dump: through its driver's ``coredump`` attribute (a platform dumper),
    or, for the GPU, by making its hardware hang and waiting for the recovery work's dump."""
    if device.startswith("0000:"):
        link = mount.path / f"sys/bus/pci/devices/{device}/devcoredump"
        mount.sh(f"echo 1 > {CTL}/devices/{device}/hang", check=True)
        assert wait_until(link.exists)
        return
    mount.sh(f"echo 1 > sys/bus/platform/devices/{device}/coredump", check=True)


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


def test_gpu_dumps_from_its_hang_path_and_has_no_coredump_attribute(mount: Mount) -> None:
    """driver_sysfs_add() creates ``coredump`` only for a driver with a .coredump callback,
    which Xe has not: its dumps come from its hang path (xe_devcoredump()), here from the
    interrupt of hardware that hangs, through the recovery work."""
    gpu = mount.path / "sys/bus/pci/devices/0000:00:02.0"
    assert (gpu / "driver").exists() and not (gpu / "coredump").exists()
    mark = mount.kmsg_mark()
    dump(mount, "0000:00:02.0")
    assert os.readlink(gpu / "devcoredump") == "../../virtual/devcoredump/devcd1"
    assert mount.kmsg_text(since=mark) == [
        "fakegpu 0000:00:02.0: [drm] fakegpu device coredump has been created",
        "fakegpu 0000:00:02.0: [drm] Check your /sys/class/drm/card0/device/devcoredump/data",
    ]
    assert mount.read("sys/module/fakegpu/refcnt") == "1\n"  # THIS_MODULE, as Xe passes
    # a second hang while the first dump is unread is dropped ("first failure only")
    mount.sh(f"echo 1 > {CTL}/devices/0000:00:02.0/hang", check=True)
    assert wait_until(lambda: len(mount.kmsg_text(since=mark)) == 4)
    assert dumps(mount) == ["devcd1"]
    # unbound, the hardware's hang reaches no handler and nothing dumps
    mount.sh("echo 0000:00:02.0 > sys/bus/pci/drivers/fakegpu/unbind", check=True)
    assert dumps(mount) == []
    mount.sh(f"echo 1 > {CTL}/devices/0000:00:02.0/hang", check=True)
    assert mount.read(f"{CTL}/devices/0000:00:02.0/irq") == "3\n"
    mount.sh("echo 0000:00:02.0 > sys/bus/pci/drivers/fakegpu/bind", check=True)
    assert dumps(mount) == []  # probe acknowledged the stale hang
    # the dropped dump took no number: the counter moves only for a dump that is made
    dump(mount, "0000:00:02.0")
    assert dumps(mount) == ["devcd2"]


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
    # cleanup_glue_dir(): the class's directory under devices/virtual/ goes with its last device
    assert wait_until(lambda: not (mount.path / "sys/devices/virtual/devcoredump").exists())
    assert (mount.path / "sys/devices/virtual").is_dir()
    assert (mount.path / CLASS / "disabled").exists()  # the class stays
    # numbers are never reused
    dump(mount, "dump_fixed.0")
    assert dumps(mount) == ["devcd3"]


def test_disabled_is_a_one_way_switch(mount: Mount) -> None:
    disabled = f"{CLASS}/disabled"
    assert mount.read(disabled) == "0\n"
    assert "Invalid argument" in mount.sh(f"echo 0 > {disabled}").stderr
    # disabled_store() parses with simple_strtol(), which knows no "+" (lib/vsprintf.c)
    assert "Invalid argument" in mount.sh(f"echo +1 > {disabled}").stderr
    assert mount.read(disabled) == "0\n"
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
    assert headers[0].startswith("BUG: KASAN: slab-use-after-free in dumper_coredump_read+")
    assert mount.read("proc/sys/kernel/tainted") == "32\n"
    rmmod = f"echo dump_legacy > {CTL}/delete_module"
    assert "Resource temporarily unavailable" in mount.sh(rmmod).stderr
    mount.sh(f"echo 1 > {CLASS}/devcd1/data", check=True)
    assert gone(mount, "devcd1")
    assert mount.read("sys/module/dump_legacy/refcnt") == "0\n"
    mount.sh(rmmod, check=True)


# The deletion work in its worker, down to where kernel threads start (x86: ret_from_fork_asm
# since v6.7), as the 2025 splat shows it.
DEVCD_DEL_WORKER = [
    "devcd_del", "process_one_work", "worker_thread", "kthread", "ret_from_fork",
    "ret_from_fork_asm",
]  # fmt: skip


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


def test_put_era_lock_cycle_is_reported_as_in_the_fix(mount: Mount) -> None:
    """The splat quoted in "devcoredump: Fix circular locking dependency with devcd->mutex"
    (2025), line by line where fakesys models it (print_circular_bug() in
    kernel/locking/lockdep.c): the lock the task holds is the highest-numbered entry, the
    new lock is #0, and every lock the task holds is listed."""
    text = lock_cycle(mount, "put")
    start = text.index("WARNING: possible circular locking dependency detected")
    report = text[start:]
    work = "(work_completion)(&(&devcd->del_wk)->work)"
    assert report[3].startswith("bash/") and report[3].endswith(" is trying to acquire lock:")
    assert re.fullmatch(
        rf"[0-9a-f]{{16}} \({re.escape(work)}\)\{{\+\.\+\.\}}-\{{0:0\}}, "
        r"at: __flush_work\+0x[0-9a-f]+/0x[0-9a-f]+",
        report[4],
    )
    assert re.fullmatch(
        r"[0-9a-f]{16} \(&devcd->mutex\)\{\+\.\+\.\}-\{3:3\}, "
        r"at: dev_coredump_put\+.*",
        report[7],
    )
    chains = [line for line in report if line.startswith("-> #")]
    assert chains == [
        "-> #2 (&devcd->mutex){+.+.}-{3:3}:",
        "-> #1 (kn->active#4){++++}-{0:0}:",
        f"-> #0 ({work}){{+.+.}}-{{0:0}}:",
    ]

    def chain(number: int) -> list[str]:
        begin = report.index(chains[2 - number]) + 1
        end = report.index("", begin)
        return [line.strip().split("+")[0] for line in report[begin:end]]

    assert chain(2)[:4] == [
        "mutex_lock_nested",
        "devcd_data_write",
        "sysfs_kf_bin_write",
        "kernfs_fop_write_iter",
    ]
    assert chain(1) == [
        "kernfs_drain",
        "__kernfs_remove",
        "kernfs_remove_by_name_ns",
        "remove_files",
        "sysfs_remove_group",
        "sysfs_remove_groups",
        "device_remove_attrs",
        "device_del",
        *DEVCD_DEL_WORKER,
    ]
    # devcd_free() is inlined into dev_coredump_put(), as in the splat
    assert chain(0)[:6] == [
        "__lock_acquire",
        "lock_acquire",
        "__flush_work",
        "flush_delayed_work",
        "dev_coredump_put",
        "dumper_devcoredump_fini",
    ]
    assert chain(0)[6:11] == [
        "devm_action_release",
        "release_nodes",
        "devres_release_all",
        "device_unbind_cleanup",
        "device_release_driver_internal",
    ]
    assert chain(0)[chain(0).index("unbind_store") :] == [
        "unbind_store",
        "drv_attr_store",
        "sysfs_kf_write",
        "kernfs_fop_write_iter",
        "vfs_write",
        "ksys_write",
        "__x64_sys_write",
        "x64_sys_call",
        "do_syscall_64",
        "entry_SYSCALL_64_after_hwframe",
    ]
    scenario = report.index(" Possible unsafe locking scenario:")
    assert report[scenario - 3 : scenario - 1] == [
        "Chain exists of:",
        f"  {work} --> kn->active#4 --> &devcd->mutex",
    ]
    assert [line.strip() for line in report[scenario + 4 : scenario + 8]] == [
        "lock(&devcd->mutex);",
        "lock(kn->active#4);",
        "lock(&devcd->mutex);",
        f"lock({work});",
    ]
    held = report.index(" *** DEADLOCK ***") + 2
    assert report[held].startswith("5 locks held by bash/")
    sites = [re.sub(r"^ #\d: [0-9a-f]{16} ", "", line) for line in report[held + 1 : held + 6]]
    assert [re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+$", "", site) for site in sites] == [
        "(sb_writers#5){.+.+}-{0:0}, at: ksys_write",
        "(&of->mutex#2){+.+.}-{3:3}, at: kernfs_fop_write_iter",
        "(&dev->mutex){....}-{3:3}, at: device_release_driver_internal",
        "(&devcd->mutex){+.+.}-{3:3}, at: dev_coredump_put",
        "(rcu_read_lock){....}-{1:2}, at: __flush_work",
    ]
    backtrace = report.index("stack backtrace:")
    assert re.fullmatch(
        r"CPU: 0 UID: 0 PID: \d+ Comm: bash Not tainted \S+ #1 PREEMPT\(voluntary\) ",
        report[backtrace + 1],
    )
    call_trace = report.index(" <TASK>", backtrace) + 1
    assert [line.strip().split("+")[0] for line in report[call_trace : call_trace + 7]] == [
        "dump_stack_lvl",
        "dump_stack",
        "print_circular_bug",
        "check_noncircular",
        "__lock_acquire",
        "lock_acquire",
        "__flush_work",
    ]
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
        "(kn->active#4){++++}-{0:0}:",
        "(&devcd->mutex){+.+.}-{3:3}:",
        "((work_completion)(&(&devcd->del_wk)->work)){+.+.}-{0:0}:",
    }


def test_debug_locks_back_on_reboots_the_checkers_so_no_splat_follows_taint_b(
    mount: Mount,
) -> None:
    """A real kernel keeps lock debugging off after taint B; turning it back on from the
    control plane clears the taint as a reboot would, and says so."""
    fd = os.open(mount.path / "dev/devm0", os.O_RDWR)
    mount.sh("echo cdev_devm.0 > sys/bus/platform/drivers/cdev_devm/unbind", check=True)
    with pytest.raises(OSError, match="No such device"):  # after the report of the read
        os.read(fd, 16)
    os.close(fd)
    assert mount.read("proc/sys/kernel/tainted") == "32\n"
    assert mount.read(f"{CTL}/debug_locks") == "0\n"
    mark = mount.kmsg_mark()
    mount.sh(f"echo 1 > {CTL}/debug_locks", check=True)
    assert mount.kmsg_text(since=mark) == [
        "fakesys: debug_locks re-enabled from the control plane: taint 32 cleared, lock "
        "dependencies forgotten, KASAN and oops reports reset, as after a reboot"
    ]
    assert mount.read("proc/sys/kernel/tainted") == "0\n"
    assert mount.read(f"{CTL}/debug_locks") == "1\n"
    text = lock_cycle(mount, "put")
    start = text.index("WARNING: possible circular locking dependency detected")
    assert text[start + 1] == "6.18.0-fakesys #1 Not tainted"


DUMPS = str(Path(__file__).parent / "scenarios" / "dumps.toml")


@pytest.mark.parametrize("fakesys", [DUMPS], indirect=True)
def test_reads_past_the_end_of_sg_and_vmalloc_dumps(mount: Mount) -> None:
    """devcd_read_from_sgtable() refuses an offset past the end with EINVAL; a dev_coredumpv()
    dump reads with memory_read_from_buffer(), which gives the end of file there too."""
    dump(mount, "dump_sg.0")
    dump(mount, "dump_v.0")
    client = mount.python(
        f"""
        import os
        for device in ("dump_sg.0", "dump_v.0"):
            fd = os.open("sys/devices/platform/" + device + "/devcoredump/data", os.O_RDONLY)
            whole = b""
            while chunk := os.read(fd, 3000):
                whole += chunk
            try:
                past = os.pread(fd, 10, 10001).hex() or "eof"
            except OSError as e:
                past = e.strerror
            print(device, len(whole), whole == {expected_binary_dump(10000)!r},
                  os.pread(fd, 10, 10000) == b"", os.pread(fd, 4, 4094).hex(), past)
        """
    )
    assert client.returncode == 0, client.stderr
    tail = expected_binary_dump(4098)[4094:].hex()  # across the first two entries
    assert client.stdout.splitlines() == [
        f"dump_sg.0 10000 True True {tail} Invalid argument",
        f"dump_v.0 10000 True True {tail} eof",
    ]


UEVENT_RACE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    device, devcd, ctl = sys.argv[1], sys.argv[2], "sys/kernel/debug/fakesys"
    base = "sys/devices/platform/" + device
    events = os.open(ctl + "/uevents", os.O_RDONLY | os.O_NONBLOCK)

    def added():
        seen = []
        while True:
            try:
                event = os.read(events, 65536).decode()
            except BlockingIOError:
                return seen
            if "ACTION=add" in event and "SUBSYSTEM=devcoredump" in event:
                seen.append(event)

    def links():
        return [os.path.lexists(base + "/devcoredump"),
                os.path.lexists(f"sys/devices/virtual/devcoredump/{devcd}/failing_device")]

    with open(ctl + "/hold/devcd_links", "w") as f:
        f.write("1")
    dumper = subprocess.Popen(["sh", "-c", "echo 1 > " + base + "/coredump"])
    while open(ctl + "/hold/devcd_links").read() != "held\\n":
        time.sleep(0.02)
    # Stopped after device_add(), before the links: which events went out by now?
    print("held", len(added()), os.path.isdir("sys/devices/virtual/devcoredump/" + devcd),
          *links())
    with open(ctl + "/hold/devcd_links", "w") as f:
        f.write("0")
    dumper.wait()
    print("done", len(added()), *links())
    """
)


@pytest.mark.parametrize("fakesys", [DUMPS], indirect=True)
def test_add_uevent_before_the_links_before_v6_7(mount: Mount) -> None:
    """Before "devcoredump: Send uevent once devcd is ready" (v6.7-rc3), device_add() sent
    the add uevent and the links came after it: a collector that follows failing_device on
    the event finds nothing. Since then the event waits for both links."""

    def race(device: str, devcd: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, "-c", UEVENT_RACE, device, devcd],
            cwd=mount.path, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    # held: events seen, the device's directory, its two links; done: the same after
    assert race("dump_early.0", "devcd1") == ["held 1 True False False", "done 0 True True"]
    assert race("dump_late.0", "devcd2") == ["held 0 True False False", "done 1 True True"]


def test_seed_patch_still_pins_the_module_of_a_dump_that_owns_it(mount: Mount) -> None:
    """Rodrigo Vivi's patch removes a dump when its failing device unbinds, but the dump
    still holds try_module_get(owner): delete_module() checks the count before it would run
    the exit that unbinds (kernel/module/main.c), so rmmod is refused while the dump lives,
    and works once an unbind has removed it."""
    refcnt = "sys/module/dump_seed_owner/refcnt"
    rmmod = f"echo dump_seed_owner > {CTL}/delete_module"
    dump(mount, "dump_seed_owner.0")
    assert dumps(mount) == ["devcd1"]
    assert mount.read(refcnt) == "1\n"
    assert "Resource temporarily unavailable" in mount.sh(rmmod).stderr
    assert mount.read("sys/module/dump_seed_owner/initstate") == "live\n"
    assert dumps(mount) == ["devcd1"]  # the refused rmmod ran no exit, so nothing unbound
    mount.sh("echo dump_seed_owner.0 > sys/bus/platform/drivers/dump_seed_owner/unbind", check=True)
    assert gone(mount, "devcd1")  # the patch's devm action, from the work
    assert mount.read(refcnt) == "0\n"
    mount.sh(rmmod, check=True)
    assert not (mount.path / "sys/module/dump_seed_owner").exists()


def test_a_report_from_the_deletion_work_names_its_worker(mount: Mount) -> None:
    """The dump of an unbound legacy driver is freed by devcd_del(), on system_wq: the
    driver's free callback touches its freed state in the worker, whose dump says so
    (print_worker_info(): "Workqueue: events devcd_del") and whose stack starts at
    ret_from_fork_asm (x86, v6.7)."""
    mount.sh(f"echo 1 > {CTL}/kasan_multi_shot", check=True)
    dump(mount, "dump_legacy.0")
    mount.sh("echo dump_legacy.0 > sys/bus/platform/drivers/dump_legacy/unbind", check=True)
    mark = mount.kmsg_mark()
    mount.sh(f"echo 1 > {CLASS}/devcd1/data", check=True)
    assert gone(mount, "devcd1")
    text = mount.kmsg_text(since=mark)
    bug = text.index(next(line for line in text if line.startswith("BUG: KASAN")))
    assert text[bug].startswith("BUG: KASAN: slab-use-after-free in dumper_coredump_free+")
    assert text[bug + 1].endswith(" by task kworker/0:1/10")
    assert text[bug + 3].startswith("CPU: 0 UID: 0 PID: 10 Comm: kworker/0:1 Not tainted ")
    assert text[bug + 5] == "Workqueue: events devcd_del"
    trace = text[text.index(" <TASK>", bug) + 1 : text.index(" </TASK>", bug)]
    names = [line.strip().split("+")[0] for line in trace]
    assert names[3:] == [
        "dumper_coredump_free",
        "devcd_dev_release",
        "device_release",
        "kobject_put",
        "put_device",
        *DEVCD_DEL_WORKER,
    ]


def test_seed_patch_action_outliving_its_dump_locks_freed_memory(mount: Mount) -> None:
    """The 2024 patch's devm actions stay registered after the dump went by a write: the
    unbind runs them on the freed struct devcd_entry (kzalloc()ed in dev_coredumpm_timeout(),
    0x428 bytes: kmalloc-2k, on a slab of order 3), whose report describes the physical page
    as dump_page() does (mm/kasan/report.c print_address_description(), mm/debug.c)."""
    dump(mount, "dump_seed.0")
    mount.sh(f"echo 1 > {CLASS}/devcd1/data", check=True)
    assert gone(mount, "devcd1")
    mark = mount.kmsg_mark()
    mount.sh("echo dump_seed.0 > sys/bus/platform/drivers/dump_seed/unbind", check=True)
    records = mount.kmsg(since=mark)
    text = [record.split(";", 1)[1].split("\n")[0] for record in records]
    bug = text.index(next(line for line in text if line.startswith("BUG: KASAN")))
    # devm_delayed_work_autocancel()'s action, registered last, is released first
    assert text[bug].startswith("BUG: KASAN: slab-use-after-free in __cancel_work_sync+")
    alloc = text.index(next(line for line in text if line.startswith("Allocated by task ")))
    functions = [line.strip().split("+")[0] for line in text[alloc + 1 : alloc + 8]]
    assert functions == [
        "kasan_save_stack", "kasan_save_track", "__kasan_kmalloc", "__kmalloc_cache_noprof",
        "dev_coredumpm_timeout", "dev_coredumpsg", "standalone_coredump",
    ]  # fmt: skip
    freed = text.index(next(line for line in text if line.startswith("Freed by task ")))
    assert text[freed] == "Freed by task 10:"  # kworker/0:1, in devcd_del()
    assert [line.strip().split("+")[0] for line in text[freed + 5 : freed + 8]] == [
        "kfree", "devcd_dev_release", "device_release",
    ]  # fmt: skip
    described = text.index(next(line for line in text if line.startswith("The buggy address be")))
    assert text[described + 1] == " which belongs to the cache kmalloc-2k of size 2048"
    page = text.index("The buggy address belongs to the physical page:")
    assert re.fullmatch(
        r"page: refcount:0 mapcount:0 mapping:0000000000000000 index:0x0 pfn:0x[0-9a-f]+",
        text[page + 1],
    )
    assert text[page + 2 : page + 5] == [
        "head: order:3 mapcount:0 entire_mapcount:0 nr_pages_mapped:0 pincount:0",
        "flags: 0x200000000000040(head|node=0|zone=2)",
        "page_type: f5(slab)",
    ]
    assert [line.split(":")[0] for line in text[page + 5 : page + 11]] == ["raw"] * 2 + ["head"] * 4
    assert text[page + 11] == "page dumped because: kasan: bad access detected"
    levels = [int(record.split(",")[0]) for record in records]
    assert set(levels[page + 1 : page + 12]) == {4}  # __dump_folio()'s pr_warn()
    assert levels[page] == 3


def test_debug_locks_back_on_forgets_the_lock_orders_so_a_cycle_is_reported_again(
    mount: Mount,
) -> None:
    """After a reboot lockdep knows no order: the same cycle, made again, is reported again
    (so a script that shows it can run twice on one tree)."""
    assert "WARNING: possible circular locking dependency detected" in lock_cycle(mount, "put")
    mount.sh(
        f"echo 1 > {CTL}/debug_locks; echo dump_put.0 > sys/bus/platform/drivers/dump_put/bind",
        check=True,
    )
    mark = mount.kmsg_mark()
    dump(mount, "dump_put.0")
    mount.sh("echo 1 > sys/devices/platform/dump_put.0/devcoredump/data", check=True)
    assert gone(mount, "devcd3")
    dump(mount, "dump_put.0")
    mount.sh("echo dump_put.0 > sys/bus/platform/drivers/dump_put/unbind", check=True)
    assert "WARNING: possible circular locking dependency detected" in mount.kmsg_text(mark)
