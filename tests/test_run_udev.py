"""``fakesys run`` with real udev clients: ``udevadm monitor``, pyudev monitors, ``udevadm
trigger``, ``lsmod``, and the live /dev of a hot-plugged device."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import fakesys_command, fuse_usable, run_shell_example

pytestmark = [
    pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine"),
    pytest.mark.skipif(shutil.which("udevadm") is None, reason="udevadm missing: scripts/setup"),
]

README = Path(__file__).parent.parent / "README.md"

# Waits in the scripts poll for a state; the bound only turns a hang into a failure.
WAIT_FOR = """
wait_for() {  # wait_for REGEX FILE: until a line of FILE matches
    timeout 30 bash -c 'until grep -q -- "$0" "$1"; do sleep 0.02; done' "$1" "$2"
}
"""


def fakesys_run(
    script: str, *, scenario: str = "usb-hotplug", options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run a bash script under ``fakesys run``, with this interpreter first on PATH (its
    pyudev) and libudev told to accept a tree that is not sysfs."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["SYSTEMD_DEVICE_VERIFY_SYSFS"] = "0"
    return subprocess.run(
        [sys.executable, "-m", "fakesys", "run", "--scenario", scenario, *options, "--",
         "bash", "-c", WAIT_FOR + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )  # fmt: skip


@dataclass
class Event:
    source: str  # KERNEL or UDEV
    action: str
    devpath: str
    subsystem: str
    properties: dict[str, str]

    @property
    def summary(self) -> tuple[str, str, str, str]:
        return (self.source, self.action, self.devpath, self.subsystem)


HEADER = re.compile(r"^(KERNEL|UDEV) *\[\d+\.\d+\] (\w+) +(\S+) \((\S+)\)$")


def monitor_events(text: str, devpath_prefixes: tuple[str, ...]) -> list[Event]:
    """The events ``udevadm monitor --property`` printed for the fake machine's devices (the
    host's own kernel events, a FUSE mount's bdi, reach the kernel group too)."""
    events = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        match = HEADER.match(lines[0]) if lines else None
        if match is None:
            continue
        properties = dict(line.split("=", 1) for line in lines[1:])
        event = Event(*match.groups(), properties)
        if event.devpath.startswith(devpath_prefixes):
            events.append(event)
    return events


def test_udevadm_monitor_sees_a_hotplug_add_and_remove_and_dev_follows(tmp_path: Path) -> None:
    out = tmp_path / "monitor"
    result = fakesys_run(f"""
        set -e
        udevadm monitor --kernel --udev --property > {out} &
        wait_for '^KERNEL - the kernel uevent' {out}
        test -c /dev/null && test -c /dev/tty && test -d /dev/pts && test -f /dev/ttyUSB0
        test ! -e /dev/ttyUSB1
        echo 2 > /sys/bus/hotplug/new_device
        test -f /dev/ttyUSB1 && echo plugged
        echo 2 > /sys/bus/hotplug/del_device
        test ! -e /dev/ttyUSB1 && echo pulled
        wait_for '^UDEV .* remove *\\/devices\\/hotplug2 ' {out}
        cat /sys/kernel/uevent_seqnum
        kill %1
    """)
    assert result.returncode == 0, result.stderr
    plugged, pulled, seqnum = result.stdout.split()
    assert (plugged, pulled) == ("plugged", "pulled")
    events = monitor_events(out.read_text(), ("/devices/hotplug2",))
    tty = "/devices/hotplug2/tty/ttyUSB1"
    expected = [
        ("add", "/devices/hotplug2", "hotplug"),
        ("add", tty, "tty"),
        ("bind", "/devices/hotplug2", "hotplug"),
        ("remove", tty, "tty"),
        ("unbind", "/devices/hotplug2", "hotplug"),
        ("remove", "/devices/hotplug2", "hotplug"),
    ]
    # Each source in order. The monitor reads the two groups from two sockets, so when both
    # have messages waiting it may print a kernel event before the udev event of the one
    # before: the order between the sources is not the monitor's to keep.
    kernel = [e for e in events if e.source == "KERNEL"]
    udev = [e for e in events if e.source == "UDEV"]
    assert [e.summary for e in kernel] == [("KERNEL", *x) for x in expected]
    assert [e.summary for e in udev] == [("UDEV", *x) for x in expected]
    seqnums = [int(e.properties["SEQNUM"]) for e in kernel]
    assert seqnums == sorted(seqnums) and len(set(seqnums)) == len(seqnums)
    assert [e.properties["SEQNUM"] for e in udev] == [e.properties["SEQNUM"] for e in kernel]
    assert int(seqnum) == seqnums[-1]  # the fake's counter is the number the host gave
    for event in events:
        assert event.properties["ACTION"] == event.action
        assert event.properties["DEVPATH"] == event.devpath
        assert event.properties["SUBSYSTEM"] == event.subsystem
    assert kernel[2].properties["DRIVER"] == "fakeserial"
    assert "DRIVER" not in kernel[4].properties and "DRIVER" not in kernel[5].properties
    for event in (kernel[1], udev[1], kernel[3], udev[3]):
        assert event.properties["DEVNAME"] == "/dev/ttyUSB1"
    # udevd's additions: the time the device was first seen, kept until it goes
    assert all("USEC_INITIALIZED" not in e.properties for e in kernel)
    assert udev[0].properties["USEC_INITIALIZED"] == udev[5].properties["USEC_INITIALIZED"]
    assert udev[1].properties["USEC_INITIALIZED"] == udev[3].properties["USEC_INITIALIZED"]


PYUDEV_CLIENT = """
import os
import pyudev

context = pyudev.Context()
udev = pyudev.Monitor.from_netlink(context)  # the udev source, which handlers use
udev.filter_by("tty")  # a socket filter on libudev's hash of SUBSYSTEM
kernel = pyudev.Monitor.from_netlink(context, source="kernel")
kernel.filter_by("hotplug")
udev.start()
kernel.start()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def show(source, device):
    exists = os.path.exists(device.device_node) if device.device_node else None
    print(source, device.action, device.device_path, device.subsystem, device.driver,
          device.device_node, exists, device.is_initialized, flush=True)


write("/sys/bus/hotplug/new_device", "2")
show("udev", udev.poll(timeout=30))
write("/sys/bus/hotplug/del_device", "2")
show("udev", udev.poll(timeout=30))
for _ in range(4):
    show("kernel", kernel.poll(timeout=30))
"""


def test_pyudev_monitors_get_udev_and_kernel_events(tmp_path: Path) -> None:
    client = tmp_path / "client.py"
    client.write_text(PYUDEV_CLIENT)
    result = fakesys_run(f"python {client}")
    assert result.returncode == 0, result.stderr
    tty = "/devices/hotplug2/tty/ttyUSB1"
    assert result.stdout.splitlines() == [
        f"udev add {tty} tty None /dev/ttyUSB1 True True",
        f"udev remove {tty} tty None /dev/ttyUSB1 False True",
        "kernel add /devices/hotplug2 hotplug None None None False",
        "kernel bind /devices/hotplug2 hotplug fakeserial None None False",
        "kernel unbind /devices/hotplug2 hotplug None None None False",
        "kernel remove /devices/hotplug2 hotplug None None None False",
    ]


def test_udevadm_trigger_settles_on_the_fake_machines_events(tmp_path: Path) -> None:
    out = tmp_path / "monitor"
    result = fakesys_run(f"""
        set -e
        udevadm monitor --kernel --udev --property --subsystem-match=tty > {out} &
        wait_for '^KERNEL - the kernel uevent' {out}
        udevadm trigger --settle --subsystem-match=tty --action=change
        echo settled
        wait_for '^UDEV .* change ' {out}
        kill %1
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "settled\n"  # --settle waited for the udev event of its UUID
    tty = "/devices/hotplug1/tty/ttyUSB0"
    kernel, udev = monitor_events(out.read_text(), (tty,))
    assert kernel.summary == ("KERNEL", "change", tty, "tty")
    assert udev.summary == ("UDEV", "change", tty, "tty")
    assert re.fullmatch(r"[0-9a-f-]{36}", kernel.properties["SYNTH_UUID"])
    assert udev.properties["SYNTH_UUID"] == kernel.properties["SYNTH_UUID"]
    assert udev.properties["SEQNUM"] == kernel.properties["SEQNUM"]


def test_module_unload_and_load_send_module_uevents_after_their_drivers(tmp_path: Path) -> None:
    out = tmp_path / "monitor"
    control = "/sys/kernel/debug/fakesys"
    result = fakesys_run(f"""
        set -e
        udevadm monitor --kernel --property > {out} &
        wait_for '^KERNEL - the kernel uevent' {out}
        echo fakeserial > {control}/delete_module
        echo fakeserial > {control}/init_module
        wait_for '^KERNEL.* add *\\/module\\/fakeserial ' {out}
        kill %1
    """)
    assert result.returncode == 0, result.stderr
    events = monitor_events(out.read_text(), ("/devices/hotplug1", "/module/"))
    assert [e.summary[1:] for e in events] == [
        ("remove", "/devices/hotplug1/tty/ttyUSB0", "tty"),
        ("unbind", "/devices/hotplug1", "hotplug"),
        ("remove", "/module/fakeserial", "module"),
        ("add", "/devices/hotplug1/tty/ttyUSB0", "tty"),
        ("bind", "/devices/hotplug1", "hotplug"),
        ("add", "/module/fakeserial", "module"),
    ]
    assert set(events[2].properties) == {"ACTION", "DEVPATH", "SUBSYSTEM", "SEQNUM"}


def test_host_network_keeps_the_host_namespace_and_sends_nothing() -> None:
    script = "readlink /proc/self/ns/net; test -f /dev/ttyUSB0 && echo node"
    result = fakesys_run(script, options=("--host-network",))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{os.readlink('/proc/self/ns/net')}\nnode\n"
    private = fakesys_run("readlink /proc/self/ns/net")
    assert private.returncode == 0, private.stderr
    assert private.stdout.splitlines()[0] != os.readlink("/proc/self/ns/net")


@pytest.mark.skipif(
    not Path("/proc/modules").exists(),
    reason="the host kernel has no loadable modules: procfs has no /proc/modules to replace",
)
def test_lsmod_lists_the_fake_modules_with_live_use_counts() -> None:
    result = fakesys_run("""
        lsmod
        exec 3< /dev/ttyUSB0
        lsmod
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Module                  Size  Used by"
    assert re.fullmatch(r"fakeserial +\d+  0", lines[1])
    assert re.fullmatch(r"fakeserial +\d+  [1-9]\d*", lines[3])


def test_dev_makes_and_removes_a_nodes_directory() -> None:
    result = fakesys_run(
        """
        set -e
        drv=/sys/bus/pci/drivers/fakegpu
        test -f /dev/dri/card0
        echo 0000:00:02.0 > $drv/unbind
        test ! -e /dev/dri && echo gone
        echo 0000:00:02.0 > $drv/bind
        test -f /dev/dri/card0 && echo back
        """,
        scenario="gpu",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "gone\nback\n"


def _readme_example() -> tuple[str, str, str]:
    """The README's hot-unplug handler: the handler, the command, and what it prints."""
    text = README.read_text()
    section = text[text.index("### A hot-unplug handler") :]
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)
    (python, handler), (sh, command), (plain, output) = blocks[:3]
    assert (python, sh, plain) == ("python", "sh", "")
    return handler, command, output


def test_the_readme_hot_unplug_handler_prints_what_the_readme_says(tmp_path: Path) -> None:
    handler, command, output = _readme_example()
    (tmp_path / "unplug.py").write_text(handler)
    result = run_shell_example(command, tmp_path)  # fakesys, python3 and pyudev on the PATH
    assert result.returncode == 0, result.stderr
    assert result.stdout == output


def test_netlink_events_are_refused_in_inits_network_namespace(tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    out = fakesys_command("mount", "--netlink", str(tmp_path / "mnt"))
    assert out.returncode == 1
    assert out.stderr == (
        "fakesys: --netlink: this is init's network namespace: its udevd would get the events\n"
    )
