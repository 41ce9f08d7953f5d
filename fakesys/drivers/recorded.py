"""The driver of a recorded machine: what every driver of a recording becomes.

It binds the devices the recording shows bound to it (see
:meth:`fakesys.kernel.replay.RecordedDevice.matches`). Its probe registers the devices it had
made on the recorded machine, the children that exist only while it is bound (a virtio-pci
function's ``virtio0``, a virtio-net device's ``net/eth0``), from the recording; its remove
unregisters them, newest first, each taking its own subtree with it. So unbinding a recorded
driver removes what the real one would have removed, with the uevents of each removal, and
binding it again brings the same devices back.

It keeps no other state and offers no file operations: a recorded device's node would need
the real driver's code.
"""

from __future__ import annotations

from ..kernel.bus import BusType
from ..kernel.core import Device
from ..kernel.driver import Driver
from ..kernel.replay import (
    DriverRecord,
    RecordedDevice,
    register_recorded_device,
    unregister_recorded_device,
)
from ..kernel.stacktrace import frame


class RecordedDriver(Driver):
    def __init__(self, bus: BusType, record: DriverRecord) -> None:
        super().__init__(bus, record.name)
        self.record = record
        self.suppress_bind_attrs = record.suppress_bind_attrs
        # The kernel function names of its callbacks, for stack traces: virtio-pci's
        # probe is virtio_pci_probe.
        self.symbol = record.name.replace("-", "_")

    async def probe(self, dev: Device) -> None:
        if not isinstance(dev, RecordedDevice):
            return
        with frame(f"{self.symbol}_probe", module=self.record.module):
            for child in dev.record.made_by_driver:
                made = await register_recorded_device(dev.machine, child, dev)
                dev.made_by_driver.append(made)

    async def remove(self, dev: Device) -> None:
        if not isinstance(dev, RecordedDevice):
            return
        with frame(f"{self.symbol}_remove", module=self.record.module):
            while dev.made_by_driver:
                await unregister_recorded_device(dev.made_by_driver.pop())

    @property
    def has_coredump(self) -> bool:
        """A driver whose devices had ``coredump`` has the callback; the recording holds no
        dump, so writing it does nothing."""
        return self.record.has_coredump
