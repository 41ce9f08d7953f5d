"""The driver core through a real mount: bind, unbind, links, errnos, as a shell user sees them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .conftest import Mount

FOO = "sys/bus/platform/drivers/foo"


def test_driver_directory_lists_files_and_bound_devices(mount: Mount) -> None:
    out = mount.sh(f"ls {FOO}", check=True).stdout.split()
    assert out == ["bind", "foo.0", "module", "uevent", "unbind"]


def test_bus_device_link_is_relative_to_the_device(mount: Mount) -> None:
    out = mount.sh("readlink sys/bus/platform/devices/foo.0", check=True).stdout
    assert out == "../../../devices/platform/foo.0\n"
    assert mount.read("sys/devices/platform/foo.0/driver/module/refcnt") == "0\n"


def test_kernel_symlink_targets(mount: Mount) -> None:
    links = {
        "sys/devices/platform/foo.0/driver": "../../../bus/platform/drivers/foo",
        f"{FOO}/foo.0": "../../../../devices/platform/foo.0",
        f"{FOO}/module": "../../../../module/foo",
        "sys/devices/platform/foo.0/subsystem": "../../../bus/platform",
        "sys/module/foo/drivers/platform:foo": "../../../bus/platform/drivers/foo",
        "sys/bus/pci/devices/0000:00:02.0": "../../../devices/pci0000:00/0000:00:02.0",
    }
    for path, target in links.items():
        assert os.readlink(mount.path / path) == target, path


@pytest.mark.parametrize("echo", ["echo", "echo -n"])
def test_unbind_then_bind_moves_both_links(mount: Mount, echo: str) -> None:
    mount.sh(f"{echo} foo.0 > {FOO}/unbind", check=True)
    assert mount.sh(f"test -e {FOO}/foo.0 || test -L {FOO}/foo.0").returncode == 1
    assert mount.sh("test -L sys/devices/platform/foo.0/driver").returncode == 1
    mount.sh(f"{echo} foo.0 > {FOO}/bind", check=True)
    assert mount.sh(f"readlink {FOO}/foo.0", check=True).stdout.strip() == (
        "../../../../devices/platform/foo.0"
    )
    assert mount.sh("readlink sys/devices/platform/foo.0/driver", check=True).stdout.strip() == (
        "../../../bus/platform/drivers/foo"
    )


def test_bind_errors_are_the_kernels(mount: Mount) -> None:
    nosuch = mount.sh(f"echo nosuch > {FOO}/bind")
    assert nosuch.returncode == 1
    assert "No such device" in nosuch.stderr
    busy = mount.sh(f"echo foo.0 > {FOO}/bind")
    assert "Device or resource busy" in busy.stderr
    # unbind of a device this driver does not have: ENODEV, not EBUSY
    unbound = mount.sh(f"echo foo.1 > {FOO}/unbind")
    assert "No such device" in unbound.stderr
    # a name with more than one trailing newline does not match (sysfs_streq)
    two_newlines = mount.sh(f"printf 'foo.1\\n\\n' > {FOO}/bind")
    assert "No such device" in two_newlines.stderr


def test_write_only_files_refuse_reads_even_for_root(mount: Mount) -> None:
    out = mount.sh(f"cat {FOO}/bind")
    assert out.returncode == 1
    assert "Permission denied" in out.stderr
    ro = mount.sh("echo x > sys/devices/platform/foo.0/modalias")
    assert "Permission denied" in ro.stderr


def test_unbound_device_binds_and_shows_in_uevent(mount: Mount) -> None:
    assert mount.read("sys/devices/platform/foo.1/uevent") == "MODALIAS=platform:foo\n"
    mount.sh(f"echo -n foo.1 > {FOO}/bind", check=True)
    assert mount.read("sys/devices/platform/foo.1/uevent") == (
        "DRIVER=foo\nMODALIAS=platform:foo\n"
    )


def test_modes_sizes_and_types(mount: Mount) -> None:
    def st(rel: str) -> os.stat_result:
        return os.lstat(mount.path / rel)

    expectations = {
        f"{FOO}/bind": (stat.S_IFREG | 0o200, 4096),
        f"{FOO}/unbind": (stat.S_IFREG | 0o200, 4096),
        f"{FOO}/uevent": (stat.S_IFREG | 0o200, 4096),
        "sys/bus/platform/drivers_autoprobe": (stat.S_IFREG | 0o644, 4096),
        "sys/bus/platform/drivers_probe": (stat.S_IFREG | 0o200, 4096),
        "sys/devices/platform/foo.0/uevent": (stat.S_IFREG | 0o644, 4096),
        "sys/devices/platform/foo.0": (stat.S_IFDIR | 0o755, 0),
        "sys/devices/platform/foo.0/driver": (stat.S_IFLNK | 0o777, 0),
        "sys/devices/pci0000:00/0000:00:02.0/remove": (stat.S_IFREG | 0o220, 4096),
        "sys/bus/pci/rescan": (stat.S_IFREG | 0o200, 4096),
        # a PCI Express function: 4096 bytes of configuration space (pci_cfg_space_size())
        "sys/devices/pci0000:00/0000:00:02.0/config": (stat.S_IFREG | 0o644, 4096),
        "sys/module/foo/refcnt": (stat.S_IFREG | 0o444, 4096),
    }
    for rel, (mode, size) in expectations.items():
        s = st(rel)
        assert (s.st_mode, s.st_size) == (mode, size), rel


def test_readdir_reports_the_entry_types(mount: Mount) -> None:
    kinds = {}
    with os.scandir(mount.path / FOO) as entries:
        for entry in entries:
            kinds[entry.name] = (entry.is_symlink(), entry.is_dir(follow_symlinks=False))
    assert kinds == {
        "bind": (False, False),
        "unbind": (False, False),
        "uevent": (False, False),
        "module": (True, False),
        "foo.0": (True, False),
    }


def test_drivers_probe_and_autoprobe(mount: Mount) -> None:
    assert mount.read("sys/bus/platform/drivers_autoprobe") == "1\n"
    assert "No such device" in mount.sh("echo nosuch > sys/bus/platform/drivers_probe").stderr
    mount.sh("echo foo.1 > sys/bus/platform/drivers_probe", check=True)
    assert mount.sh("test -L sys/devices/platform/foo.1/driver").returncode == 0
    # already bound: still succeeds
    mount.sh("echo foo.1 > sys/bus/platform/drivers_probe", check=True)
    mount.sh("echo 0 > sys/bus/platform/drivers_autoprobe", check=True)
    assert mount.read("sys/bus/platform/drivers_autoprobe") == "0\n"


def test_driver_override_blocks_and_redirects_matching(mount: Mount) -> None:
    dev = "sys/devices/platform/foo.1"
    assert mount.read(f"{dev}/driver_override") == "(null)\n"
    mount.sh(f"echo other > {dev}/driver_override", check=True)
    assert mount.read(f"{dev}/driver_override") == "other\n"
    assert "No such device" in mount.sh(f"echo foo.1 > {FOO}/bind").stderr
    mount.sh(f"echo > {dev}/driver_override", check=True)
    assert mount.read(f"{dev}/driver_override") == "(null)\n"
    mount.sh(f"echo foo.1 > {FOO}/bind", check=True)


def test_held_directory_fds_see_links_flip(mount: Mount) -> None:
    """The access pattern of IGT's core_hotunplug: dirfds on the device's ``driver`` and on
    ``subsystem/devices`` kept across unbind, bind, remove and rescan."""
    out = mount.python(
        """
        import os
        bdf = "0000:00:02.0"
        dev = os.open("sys/bus/pci/devices/" + bdf, os.O_DIRECTORY)
        drv = os.open("driver", os.O_DIRECTORY, dir_fd=dev)
        bus = os.open("subsystem/devices", os.O_DIRECTORY, dir_fd=dev)
        os.close(dev)

        def present(fd):
            try:
                os.stat(bdf, dir_fd=fd, follow_symlinks=False)
                return True
            except FileNotFoundError:
                return False

        def write(fd, name, value):
            f = os.open(name, os.O_WRONLY, dir_fd=fd)
            assert os.write(f, value.encode()) == len(value)
            os.close(f)

        seen = [present(drv)]
        write(drv, "unbind", bdf)
        seen.append(present(drv))
        write(drv, "bind", bdf)
        seen.append(present(drv))
        d = os.open(bdf, os.O_DIRECTORY, dir_fd=bus)
        assert os.access("remove", os.F_OK, dir_fd=d)
        write(d, "remove", "1")
        os.close(d)
        seen.append(present(bus))
        write(bus, "../rescan", "1")
        seen.append(present(bus))
        seen.append(present(drv))
        print(seen)
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[True, False, True, False, True, True]"


def test_pci_device_attributes(mount: Mount) -> None:
    dev = "sys/bus/pci/devices/0000:00:02.0"
    assert mount.read(f"{dev}/vendor") == "0x1234\n"
    assert mount.read(f"{dev}/device") == "0x1111\n"
    assert mount.read(f"{dev}/class") == "0x030000\n"
    assert mount.read(f"{dev}/revision") == "0x02\n"
    assert mount.read(f"{dev}/irq") == "11\n"
    resource = mount.read(f"{dev}/resource").splitlines()
    assert len(resource) == 7
    assert resource[0] == "0x00000000fd000000 0x00000000fdffffff 0x0000000000042208"
    assert mount.read(f"{dev}/uevent") == (
        "DRIVER=fakegpu\n"
        "PCI_CLASS=30000\n"
        "PCI_ID=1234:1111\n"
        "PCI_SUBSYS_ID=1AF4:1100\n"
        "PCI_SLOT_NAME=0000:00:02.0\n"
        "MODALIAS=pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00\n"
    )
    config = (mount.path / dev / "config").read_bytes()
    assert len(config) == 4096
    assert config[:4] == bytes([0x34, 0x12, 0x11, 0x11])


def test_lspci_lists_the_device_with_its_driver(mount: Mount) -> None:
    out = mount.sh("lspci -k -A linux-sysfs -O sysfs.path=sys/bus/pci -n", check=True).stdout
    assert "00:02.0 0300: 1234:1111 (rev 02)" in out
    assert "Kernel driver in use: fakegpu" in out


def test_remove_and_rescan(mount: Mount) -> None:
    dev = "sys/bus/pci/devices/0000:00:02.0"
    assert "Invalid argument" in mount.sh(f"echo x > {dev}/remove").stderr
    mount.sh(f"echo 0 > {dev}/remove", check=True)  # 0 is a no-op
    assert mount.sh(f"test -e {dev}").returncode == 0
    mount.sh(f"echo 1 > {dev}/remove", check=True)
    assert mount.sh(f"test -e {dev}").returncode == 1
    assert mount.sh("ls sys/bus/pci/drivers/fakegpu", check=True).stdout.split() == [
        "bind",
        "module",
        "new_id",
        "remove_id",
        "uevent",
        "unbind",
    ]
    mount.sh("echo 1 > sys/bus/pci/rescan", check=True)
    assert mount.sh(f"readlink {dev}/driver", check=True).stdout.strip() == (
        "../../../bus/pci/drivers/fakegpu"
    )


def test_open_attribute_of_removed_device_gives_enodev(mount: Mount) -> None:
    out = mount.python(
        """
        import errno, os
        dev = "sys/bus/pci/devices/0000:00:02.0/"
        fd = os.open(dev + "vendor", os.O_RDONLY)
        with open(dev + "remove", "w") as f:
            f.write("1")
        for op in (lambda: os.pread(fd, 100, 0), lambda: os.read(fd, 100)):
            try:
                op()
            except OSError as e:
                print(errno.errorcode[e.errno])
        os.fstat(fd)
        os.close(fd)
        try:
            os.stat(dev + "vendor")
        except FileNotFoundError:
            print("ENOENT")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ENODEV", "ENODEV", "ENOENT"]


def test_show_runs_once_per_open_like_seq_file(mount: Mount) -> None:
    out = mount.python(
        f"""
        import os
        fd = os.open("sys/devices/platform/foo.0/uevent", os.O_RDONLY)
        first = os.read(fd, 4)
        with open("{FOO}/unbind", "w") as f:
            f.write("foo.0")
        rest = os.read(fd, 100)
        again = os.pread(fd, 100, 0)
        print(repr(first + rest), repr(again))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        repr(b"DRIVER=foo\nMODALIAS=platform:foo\n"),
        repr(b"MODALIAS=platform:foo\n"),
    ]


def test_o_trunc_open_of_an_attribute_is_accepted(mount: Mount) -> None:
    out = mount.python(
        f"""
        with open("{FOO}/unbind", "w") as f:  # O_WRONLY|O_CREAT|O_TRUNC
            f.write("foo.0\\n")
        """
    )
    assert out.returncode == 0, out.stderr
    assert mount.sh("test -L sys/devices/platform/foo.0/driver").returncode == 1


def test_uevent_store_and_kmsg(mount: Mount) -> None:
    mount.sh("echo add > sys/devices/platform/foo.0/uevent", check=True)
    bad = mount.sh("echo frobnicate > sys/devices/platform/foo.0/uevent")
    assert "Invalid argument" in bad.stderr
    text = mount.kmsg_text()
    assert "synth uevent: /devices/platform/foo.0: unknown uevent action string" in text
    assert "foo foo.0: uevent: failed to send synthetic uevent: -22" in text


def test_kmsg_records_have_the_kernel_format(mount: Mount) -> None:
    mount.sh("echo '<3>hello from userspace' > dev/kmsg", check=True)
    mount.sh("echo plain > dev/kmsg", check=True)
    records = mount.kmsg()
    # start_kernel()'s first message: pr_notice("%s", linux_banner), so level 5
    assert records[0].startswith("5,0,")
    assert records[0].endswith(
        ",-;Linux version 6.18.0-fakesys (fakesys@fakesys)"
        " (gcc (GCC) 14.2.0, GNU ld (GNU Binutils) 2.44)"
        " #1 SMP PREEMPT_DYNAMIC Sun Nov 30 12:00:00 UTC 2025"
    )
    assert mount.read("proc/version") == records[0].split(";", 1)[1] + "\n"
    hello = next(r for r in records if "hello" in r)
    prefix, seq, _usec, rest = hello.split(",", 3)
    assert prefix == "11"  # LOG_USER << 3 | 3
    assert rest == "-;hello from userspace"
    plain = next(r for r in records if r.endswith(";plain"))
    assert plain.startswith("12,")  # LOG_USER << 3 | default level 4
    assert int(plain.split(",")[1]) == int(seq) + 1


def test_kmsg_one_record_per_read_and_einval_for_short_buffer(mount: Mount) -> None:
    out = mount.python(
        """
        import errno, os
        fd = os.open("dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        try:
            os.read(fd, 10)
        except OSError as e:
            print(errno.errorcode[e.errno])
        first = os.read(fd, 8192)
        print(first.count(b"\\n"))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["EINVAL", "1"]


def test_taint_starts_clear_and_only_grows(mount: Mount) -> None:
    assert mount.read("proc/sys/kernel/tainted") == "0\n"
    mount.sh("echo 512 > proc/sys/kernel/tainted", check=True)
    mount.sh("echo 32 > proc/sys/kernel/tainted", check=True)
    assert mount.read("proc/sys/kernel/tainted") == "544\n"
    assert "Invalid argument" in mount.sh("echo abc > proc/sys/kernel/tainted").stderr


def test_module_directory(mount: Mount) -> None:
    assert mount.read("sys/module/foo/initstate") == "live\n"
    assert mount.read("sys/module/foo/refcnt") == "0\n"
    assert mount.sh("ls sys/module/foo/holders", check=True).stdout == ""
    assert mount.sh("ls sys/module/fakegpu/drivers", check=True).stdout.split() == ["pci:fakegpu"]


def test_power_group(mount: Mount) -> None:
    power = "sys/devices/platform/foo.0/power"
    assert mount.read(f"{power}/runtime_status") == "unsupported\n"
    assert mount.read(f"{power}/control") == "auto\n"
    assert "Input/output error" in mount.sh(f"cat {power}/autosuspend_delay_ms").stderr


FAILING_PROBE = str(Path(__file__).parent / "scenarios" / "failing-probe.toml")


@pytest.mark.parametrize("fakesys", [FAILING_PROBE], indirect=True)
def test_failed_probe_returns_its_errno_and_logs(mount: Mount) -> None:
    out = mount.sh("echo bar.3 > sys/bus/platform/drivers/bar/bind")
    assert "Cannot allocate memory" in out.stderr
    assert mount.sh("test -L sys/devices/platform/bar.3/driver").returncode == 1
    records = [r for r in mount.kmsg() if "probe with driver" in r]
    # once at boot, once for the bind
    assert len(records) == 2
    message, *dictionary = records[-1].split(";", 1)[1].split("\n")
    assert message == "bar bar.3: probe with driver bar failed with error -12"
    assert dictionary == [" SUBSYSTEM=platform", " DEVICE=+platform:bar.3"]
    assert records[-1].startswith("3,")


DEFERRED_PROBE = str(Path(__file__).parent / "scenarios" / "deferred-probe.toml")


@pytest.mark.parametrize("fakesys", [DEFERRED_PROBE], indirect=True)
def test_a_deferred_probe_binds_once_its_supplier_is_bound(mount: Mount) -> None:
    deferred = "sys/kernel/debug/devices_deferred"
    assert mount.read(deferred) == "sensor.0\tplatform: supplier pmic.0 not ready\nlate.0\t\n"
    assert mount.sh(f"stat -c %a {deferred}", check=True).stdout == "444\n"
    out = mount.sh("echo sensor.0 > sys/bus/platform/drivers/sensor/bind")
    assert "Resource temporarily unavailable" in out.stderr  # EAGAIN
    mount.sh("echo pmic.0 > sys/bus/platform/drivers/pmic/bind", check=True)
    assert mount.wait_for("sys/devices/platform/sensor.0/driver")
    assert mount.read(deferred) == "late.0\t\n"


def test_the_tree_cannot_be_changed_with_file_operations(mount: Mount) -> None:
    assert "Permission denied" in mount.sh("echo 1 > sys/devices/platform/foo.0/nosuch").stderr
    assert "Operation not permitted" in mount.sh("mkdir sys/devices/x").stderr
    assert "Operation not permitted" in mount.sh(f"rm -f {FOO}/bind").stderr
    assert "Operation not permitted" in mount.sh(f"ln -s foo {FOO}/link").stderr
    assert "Operation not permitted" in mount.sh(f"mv {FOO}/bind {FOO}/bond").stderr
    assert mount.sh(f"test -e {FOO}/bind").returncode == 0
