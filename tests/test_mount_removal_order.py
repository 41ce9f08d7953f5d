"""What a shell sees of a device while its driver is being unbound by the device's removal:
stopped at the ``unbind_devres`` hold point, after the driver's remove()."""

from __future__ import annotations

import pytest

from .conftest import Mount

CTL = "sys/kernel/debug/fakesys"

SEE_DURING_REMOVAL = """
hold={ctl}/devices/{dev}/hold/unbind_devres
echo 1 > $hold
{remove} &
until grep -qx held $hold; do sleep 0.05; done
echo "during: $(ls -A {path} | tr '\\n' ' ')"
echo 0 > $hold
wait
test -e {path} || echo "after: gone"
"""


@pytest.mark.parametrize("fakesys", ["usb-hotplug"], indirect=True)
def test_unplug_removes_the_files_before_the_driver_is_unbound(mount: Mount) -> None:
    """device_del(): power/, uevent, the bus's attributes and the links are gone by the time
    bus_remove_device() unbinds the driver; the directory itself goes last."""
    script = SEE_DURING_REMOVAL.format(
        ctl=CTL,
        dev="hotplug1",
        remove="echo 1 > sys/bus/hotplug/del_device",
        path="sys/devices/hotplug1",
    )
    out = mount.sh(script)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["during: ", "after: gone"]


def test_pci_remove_unbinds_the_driver_before_deleting_the_device(mount: Mount) -> None:
    """pci_stop_and_remove_bus_device(): pci_stop_dev() releases the driver while the device
    is whole; device_del() comes after (drivers/pci/remove.c)."""
    path = "sys/bus/pci/devices/0000:00:02.0"
    script = SEE_DURING_REMOVAL.format(
        ctl=CTL, dev="0000:00:02.0", remove=f"echo 1 > {path}/remove", path=path
    )
    out = mount.sh(script)
    assert out.returncode == 0, out.stderr
    during, after = out.stdout.splitlines()
    names = during.removeprefix("during: ").split()
    assert {"vendor", "config", "power", "uevent", "resource0", "subsystem"} <= set(names)
    assert "driver" not in names  # driver_sysfs_remove() came first
    assert "remove" not in names  # device_remove_file_self()
    assert after == "after: gone"
