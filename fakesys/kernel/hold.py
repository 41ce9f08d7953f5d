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

A delay is a fixed pause in milliseconds at the same places, on the engine's clock: writing
``advance_clock`` ends it as it ends any other timeout.

Points and delays are set for every device at once (``hold/<point>``, ``delay/<point>``) or for
one device (``devices/<dev>/hold/<point>``, ``devices/<dev>/delay/<point>``). An operation on a
device stops at each of the two that is armed, and pauses for the longer of the two delays.
Points reached by no device in particular (``tasklet``) have only the global setting.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError
from .lib import buf_to_str

if TYPE_CHECKING:
    from .core import Device
    from .workqueue import Clock

HOLD_POINTS = {
    "unbind_devres": "between the driver's remove() and the release of its devres",
    "read": "inside a device read, after it entered the driver and before it copies data",
    "module_get": "in open(), between the driver lookup and taking the module reference",
    "tasklet": "before a scheduled tasklet runs",
    "devcd_free": "in the pre-fix devcd_free(), with devcd->mutex held, before the flush",
    "devcd_links": "in dev_coredumpm(), after device_add() and before the dump's links",
}


@dataclass(slots=True)
class HoldPoint:
    name: str
    armed: bool = False
    delay_ms: int = 0
    holders: int = 0
    #: What the holders wait on; made by the first of them (every device has its points).
    _released: trio.Event | None = None

    @property
    def state(self) -> str:
        if self.holders:
            return "held"
        return "armed" if self.armed else "off"

    def arm(self) -> None:
        self.armed = True

    def release(self) -> None:
        self.armed = False
        if self._released is not None:
            self._released.set()
            self._released = None

    async def hold(self) -> None:
        """Wait here while armed."""
        if self.armed:
            if self._released is None:
                self._released = trio.Event()
            released = self._released
            self.holders += 1
            try:
                await released.wait()
            finally:
                self.holders -= 1

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
    """The global points, and those of each device that has hardware controls, by name.

    The engine's own points are :data:`HOLD_POINTS`; a driver declares more with
    :meth:`define` (``DEFINE_HOLD_POINT()`` in the driver API) when its module loads, and the
    point appears in every ``hold/`` and ``delay/`` directory.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.descriptions = dict(HOLD_POINTS)
        self.points = self._new_points()
        self.per_device: dict[str, dict[str, HoldPoint]] = {}
        #: Told the name of each point defined after boot.
        self.on_define: list[Callable[[str], None]] = []

    def _new_points(self) -> dict[str, HoldPoint]:
        return {name: HoldPoint(name) for name in self.descriptions}

    def __getitem__(self, name: str) -> HoldPoint:
        return self.points[name]

    def define(self, name: str, description: str) -> None:
        """A new point, for every device and globally; defining it again changes nothing."""
        if name in self.descriptions:
            return
        self.descriptions[name] = description
        for points in (self.points, *self.per_device.values()):
            points[name] = HoldPoint(name)
        for listener in self.on_define:
            listener(name)

    def device_points(self, dev_name: str) -> dict[str, HoldPoint]:
        """The points of one device, made on first use."""
        return self.per_device.setdefault(dev_name, self._new_points())

    def forget_device(self, dev_name: str) -> None:
        """The device's hardware is gone: what its points hold goes on, and they go."""
        for point in self.per_device.pop(dev_name, {}).values():
            point.release()

    async def reach(self, name: str, dev: Device | None = None) -> None:
        """Called by the engine at this place, for ``dev`` if the operation has one: stop at
        each armed point, then pause for the delay, on the engine clock."""
        points = [self.points[name]]
        if dev is not None and dev.name in self.per_device:
            points.append(self.per_device[dev.name][name])
        for point in points:
            await point.hold()
        delay_ms = max(point.delay_ms for point in points)
        if delay_ms:
            await self.clock.sleep_until(self.clock.now() + delay_ms / 1000)
