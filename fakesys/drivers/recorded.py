"""recorded: the driver every driver of a recorded machine becomes (:mod:`fakesys.kernel.replay`).

It binds the devices the recording shows bound to it, and no others (a recording holds no id
table). Its probe registers the devices it had made on the recorded machine, the children that
exist only while it is bound (a virtio-pci function's ``virtio0``, a virtio-net device's
``net/eth0``); its remove unregisters them, newest first, each taking its own subtree with it.
So an unbind takes away what the real driver's remove would have, with a ``remove`` uevent
for each device, and a bind brings the same devices back, as recorded.

It has no other state and no file operations: a recorded device's node would need the real
driver's code. Unlike the drivers a scenario names, it reaches below the driver API, into the
replay of the recording, which is where its children are described.
"""

from __future__ import annotations

from fakesys.kernel.replay import (
    DriverRecord,
    RecordedDevice,
    register_recorded_device,
    unregister_recorded_device,
)
from fakesys.linux import Device, Driver

from ..kernel.bus import BusType


async def recorded_probe(dev: Device) -> None:
    """Register the devices the driver made on the recorded machine (none for a device that
    was not recorded: a scenario's, bound by name)."""
    if not isinstance(dev, RecordedDevice):
        return
    for child in dev.record.made_by_driver:
        dev.made_by_driver.append(await register_recorded_device(dev.machine, child, dev))


async def recorded_remove(dev: Device) -> None:
    if not isinstance(dev, RecordedDevice):
        return
    while dev.made_by_driver:
        await unregister_recorded_device(dev.made_by_driver.pop())


async def recorded_coredump(dev: Device) -> None:
    """The recorded driver could dump (its devices had ``coredump``); the recording holds no
    dump, so there is nothing to write."""


def recorded_driver(bus: BusType, record: DriverRecord) -> Driver:
    """The driver structure of one recorded driver, on its bus."""
    drv = Driver(
        record.name,
        bus=bus,
        probe=recorded_probe,
        remove=recorded_remove,
        coredump=recorded_coredump if record.has_coredump else None,
        kernel=bus.kernel,
    )
    drv.suppress_bind_attrs = record.suppress_bind_attrs
    return drv
