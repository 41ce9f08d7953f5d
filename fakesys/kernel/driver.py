"""Drivers (drivers/base/driver.c): ``struct device_driver``, its callbacks and registration.

A driver is data: a name, a bus, an owner module and the functions the core calls (probe,
remove, coredump). A driver file builds one at load with the bus's constructor
(``PlatformDriver(name=..., probe=..., remove=...)``), and the structure lives in its module's
memory, so that a reference to it that outlives the module reads freed memory. The core calls
the functions through :mod:`.calls`, which gives each its frame in reports.

Engine code and tests may also subclass a driver class and override :meth:`Driver.probe` and
:meth:`Driver.remove` directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..kernfs import KernfsNode
from .bus import bus_add_driver, bus_remove_driver
from .calls import call
from .module import loading_kernel, this_module
from .slab import Struct
from .stacktrace import frame

if TYPE_CHECKING:
    from .bus import BusType
    from .core import Device
    from .kernel import Kernel
    from .module import Module

# A probe, remove or coredump takes its bus's device (a PlatformDevice, a PciDevice): Any,
# as a C driver's functions take the bus's struct and the core calls them through its own.
DriverFn = Callable[[Any], Awaitable[None] | None]


class Driver(Struct, name="device_driver", var="drv"):
    """``struct device_driver``, with the id table of its bus. The callbacks take the bus's
    device (a ``struct platform_device`` is its struct device here).

    A driver file makes one at load (``PlatformDriver(name="foo", probe=foo_probe)``): the
    kernel and the owner are then the ones loading it, and the structure lives in the owner's
    memory. Engine code gives ``kernel`` (and ``owner``) itself. A plain ``Driver`` names
    its ``bus``, as a ``struct device_driver`` registered with driver_register() does.
    """

    #: The bus a driver of this class registers on (``platform_driver_register()`` sets it).
    BUS = ""

    name: str
    bus: BusType
    owner: Module | None
    probe_fn: DriverFn | None
    remove_fn: DriverFn | None
    coredump_fn: DriverFn | None
    id_table: tuple[object, ...]
    suppress_bind_attrs: bool

    def __init__(
        self,
        name: str,
        *,
        probe: DriverFn | None = None,
        remove: DriverFn | None = None,
        coredump: DriverFn | None = None,
        id_table: Iterable[object] = (),
        bus: BusType | None = None,
        kernel: Kernel | None = None,
        owner: Module | None = None,
    ) -> None:
        if kernel is None:
            kernel, owner = loading_kernel(), this_module()
        self._zero(owner.static_memory(type(self)) if owner is not None else None)
        self.kernel = kernel
        self.name = name
        self.bus = bus if bus is not None else kernel.buses[self.BUS]
        self.owner = owner
        self.probe_fn = probe
        self.remove_fn = remove
        self.coredump_fn = coredump
        self.id_table = tuple(id_table)
        #: IDs added at run time (``new_id``), on the buses that have it; tried first.
        self.dynids: list[Any] = []
        self.devices: list[Device] = []
        self.kn: KernfsNode | None = None

    def __repr__(self) -> str:
        return f"<Driver {self.bus.name}:{self.name}>"

    async def probe(self, dev: Device) -> None:
        """Bind to ``dev``; raise :class:`~fakesys.kernfs.ErrnoError` to refuse."""
        probe = self.probe_fn
        if probe is not None:
            await call(self.kernel, probe, dev)

    async def remove(self, dev: Device) -> None:
        """Unbind from ``dev``; cannot fail."""
        remove = self.remove_fn
        if remove is not None:
            await call(self.kernel, remove, dev)

    @property
    def has_coredump(self) -> bool:
        """Whether the driver has a ``.coredump()`` callback (and its devices a ``coredump``
        attribute while bound)."""
        return self.coredump_fn is not None

    async def coredump(self, dev: Device) -> None:
        """Dump the device's state (``echo 1 > /sys/devices/.../coredump``)."""
        coredump = self.coredump_fn
        if coredump is not None:
            await call(self.kernel, coredump, dev)


async def driver_register(drv: Driver) -> None:
    with frame("driver_register"):
        await bus_add_driver(drv)


async def driver_unregister(drv: Driver) -> None:
    await bus_remove_driver(drv)
