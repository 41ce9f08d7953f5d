"""Hold points and delays: races reproduced on demand, not by luck.

A hold point is a named place in the engine (between a driver's remove() and the devres
release, inside a read, between a lookup and the module reference it should have taken, before
a tasklet runs). Armed, it stops the next operation that reaches it until it is released, so a
script can interleave two shells deterministically::

    echo 1 > hold/unbind_devres          # arm
    echo foo.0 > .../unbind &            # stops between remove() and devres release
    until grep -qx held hold/unbind_devres; do sleep 0.05; done
    ...                                  # do something in the window
    echo 0 > hold/unbind_devres          # release (and disarm)

A delay is a fixed pause in milliseconds at the same places, on the engine's clock.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

import trio

from ..kernfs import ErrnoError
from .lib import buf_to_str

HOLD_POINTS = {
    "unbind_devres": "between the driver's remove() and the release of its devres",
    "read": "inside a device read, after it entered the driver and before it copies data",
    "module_get": "in open(), between the driver lookup and taking the module reference",
    "tasklet": "before a scheduled tasklet runs",
    "devcd_free": "in the pre-fix devcd_free(), with devcd->mutex held, before the flush",
}


@dataclass
class HoldPoint:
    name: str
    armed: bool = False
    delay_ms: int = 0
    holders: int = 0
    _released: trio.Event = field(default_factory=trio.Event)

    @property
    def state(self) -> str:
        if self.holders:
            return "held"
        return "armed" if self.armed else "off"

    def arm(self) -> None:
        self.armed = True

    def release(self) -> None:
        self.armed = False
        self._released.set()
        self._released = trio.Event()

    async def reach(self) -> None:
        """Called by the engine at this place: wait while armed, then the delay."""
        if self.armed:
            self.holders += 1
            try:
                await self._released.wait()
            finally:
                self.holders -= 1
        if self.delay_ms:
            await trio.sleep(self.delay_ms / 1000)

    def show(self) -> str:
        return f"{self.state}\n"

    def store(self, buf: bytes) -> None:
        """``1``/``arm`` arms, ``0``/``release`` releases the holders and disarms."""
        word = buf_to_str(buf).strip()
        if word in ("1", "arm"):
            self.arm()
        elif word in ("0", "release"):
            self.release()
        else:
            raise ErrnoError(errno.EINVAL)


class HoldPoints:
    def __init__(self) -> None:
        self.points = {name: HoldPoint(name) for name in HOLD_POINTS}

    async def reach(self, name: str) -> None:
        await self.points[name].reach()

    def __getitem__(self, name: str) -> HoldPoint:
        return self.points[name]
