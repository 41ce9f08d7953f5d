"""The shipped scenarios, and devices that come and go at run time."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import Mount


def test_fakesys_scenarios_lists_the_shipped_ones() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fakesys", "scenarios"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.split() == ["camera", "default", "gpu", "usb-hotplug"]


@pytest.mark.parametrize("fakesys", ["camera"], indirect=True)
def test_camera_has_a_video_node(mount: Mount) -> None:
    assert os.readlink(mount / "sys/class/video4linux/video0") == (
        "../../devices/platform/camera.0/video4linux/video0"
    )
    mount.sh("echo -n frame > sys/kernel/debug/fakesys/devices/camera.0/feed", check=True)
    assert mount.sh("head -c 5 dev/video0", check=True).stdout == "frame"
    assert oct(os.stat(mount / "dev/video0").st_mode & 0o777) == "0o660"


@pytest.mark.parametrize("fakesys", ["gpu"], indirect=True)
def test_gpu_has_a_drm_node_in_a_directory_and_dumps(mount: Mount) -> None:
    assert (mount / "dev/dri/card0").exists()
    assert "DEVNAME=dri/card0\n" in mount.read("sys/class/drm/card0/uevent")
    mount.write("sys/bus/pci/devices/0000:00:02.0/coredump", "1")
    assert mount.read("sys/class/drm/card0/device/devcoredump/data").startswith("kernel: ")
    mount.sh("echo 0000:00:02.0 > sys/bus/pci/drivers/fakegpu/unbind", check=True)
    assert not (mount / "dev/dri").exists()  # the empty directory goes with its node
    assert not (mount / "sys/class/devcoredump/devcd1").exists()


@pytest.mark.parametrize("fakesys", ["usb-hotplug"], indirect=True)
def test_new_device_and_del_device_follow_netdevsim(mount: Mount) -> None:
    bus = "sys/bus/hotplug"
    mount.sh(f"echo 2 3 > {bus}/new_device", check=True)
    assert os.readlink(mount / f"{bus}/devices/hotplug2") == "../../../devices/hotplug2"
    assert mount.read("sys/devices/hotplug2/port_count") == "3\n"
    assert mount.read("sys/devices/hotplug2/num_queues") == "1\n"
    assert (mount / "dev/ttyUSB1").exists()
    assert "No space left on device" in mount.sh(f"echo 2 > {bus}/new_device").stderr
    assert "Invalid argument" in mount.sh(f"echo x > {bus}/new_device").stderr
    assert "Invalid argument" in mount.sh(f"echo 2147483648 > {bus}/new_device").stderr
    assert "No such file or directory" in mount.sh(f"echo 7 > {bus}/del_device").stderr
    holder = mount.python(
        f"""
        import errno, os
        fd = os.open("dev/ttyUSB1", os.O_RDWR)
        with open("{bus}/del_device", "w") as f:
            f.write("2")
        print(repr(os.read(fd, 1)))  # a hung-up tty reads end of file
        try:
            os.write(fd, b"x")
        except OSError as e:
            print(errno.errorcode[e.errno])  # and its writes fail with EIO
        os.close(fd)
        """
    )
    assert holder.stdout == "b''\nEIO\n", holder.stderr
    assert not (mount / "sys/devices/hotplug2").exists()
    assert not (mount / "sys/kernel/debug/fakesys/devices/hotplug2").exists()
    assert any(
        'Format for adding new device is "id port_count num_queues"' in line
        for line in mount.kmsg_text()
    )
