"""The simulated hardware behind a device: an interrupt line and a receive path.

Data fed from the control plane (``sys/kernel/debug/fakesys/devices/<dev>/feed``), or produced
by the hardware itself at a fixed period (a sensor, a serial line), goes to the receive handler
the bound driver installed, as DMA into its buffers would; with no driver it is dropped and
counted, as hardware with nobody listening drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .irq import IrqLine

if TYPE_CHECKING:
    from .workqueue import Clock


class Hardware:
    def __init__(self) -> None:
        self.irq = IrqLine()
        self.on_rx: Callable[[bytes], None] | None = None
        self.dropped = 0
        #: Reads blocked waiting for data from this hardware, so that a script can wait
        #: until a reader is really in the driver before it races something against it.
        self.readers = 0
        #: Read-only attributes the hardware shows in its device's directory (a serial
        #: number, a firmware version), from the scenario.
        self.attrs: dict[str, str] = {}

    async def produce(self, clock: Clock, period: float, data: bytes) -> None:
        """Feed ``data`` every ``period`` seconds of the engine's clock, for ever."""
        deadline = clock.now()
        while True:
            deadline += period
            await clock.sleep_until(deadline)
            self.feed(data)

    def feed(self, data: bytes) -> None:
        if self.on_rx is None:
            self.dropped += len(data)
        else:
            self.on_rx(data)
