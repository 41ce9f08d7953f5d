"""The simulated hardware behind a device: an interrupt line and a receive FIFO.

Data fed from the control plane (``sys/kernel/debug/fakesys/devices/<dev>/feed``), or produced
by the hardware itself at a fixed period (a sensor, a serial line), lands in the device's
receive FIFO and raises its interrupt, whose handler reads it out (:meth:`Hardware.rx_read`,
the driver's read of its receive register). With no handler on the line, nobody listens and
the data is dropped and counted, as is what overflows the FIFO.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .irq import IrqLine

if TYPE_CHECKING:
    from .workqueue import Clock


#: The most periods of data a periodic source delivers at once after a clock jump.
CATCH_UP_MAX = 64
RX_FIFO_SIZE = 64 * 1024


class Hardware:
    def __init__(self, irq: int = 0) -> None:
        self.irq = IrqLine(irq)
        self.rx = bytearray()
        self.dropped = 0
        #: Reads blocked waiting for data from this hardware, so that a script can wait
        #: until a reader is really in the driver before it races something against it.
        self.readers = 0
        #: Read-only attributes the hardware shows in its device's directory (a serial
        #: number, a firmware version), from the scenario.
        self.attrs: dict[str, str] = {}

    async def produce(self, clock: Clock, period_ns: int, data: bytes) -> None:
        """Feed ``data`` every ``period_ns`` nanoseconds of the engine's clock, for ever.

        After a jump of the clock, the periods that fell due are delivered at once, up to
        :data:`CATCH_UP_MAX` of them (a FIFO's depth); the data of the others overran it and
        counts as dropped. A jump of any size costs one wake-up.
        """
        due = clock.now_ns() + period_ns
        while True:
            await clock.sleep_until_ns(due)
            periods = (clock.now_ns() - due) // period_ns + 1
            due += periods * period_ns
            delivered = min(periods, CATCH_UP_MAX)
            self.dropped += (periods - delivered) * len(data)
            self.feed(data * delivered)

    def feed(self, data: bytes) -> None:
        """Data arrives from the outside world."""
        if not self.irq.actions:
            self.dropped += len(data)
            return
        room = RX_FIFO_SIZE - len(self.rx)
        self.dropped += max(0, len(data) - room)
        self.rx += data[: max(0, room)]
        self.irq.raise_irq()

    def rx_read(self, count: int = RX_FIFO_SIZE) -> bytes:
        """Read up to ``count`` bytes of the receive FIFO."""
        data = bytes(self.rx[:count])
        del self.rx[:count]
        return data
