"""Scenarios: a machine described as data (TOML), and the boot that builds it.

A scenario lists ``[[module]]``, ``[[driver]]`` and ``[[device]]`` entries. It is checked whole
before anything is built: an error names the file, the entry and the field and says what was
expected, and no mount happens. Drivers register before devices are added, so devices are
probed as they appear, as at boot; a device with ``bind = false`` is added with the bus's
``drivers_autoprobe`` off and so stays unbound until someone writes its name to ``bind``.

Example::

    [[module]]
    name = "foo"

    [[driver]]
    name = "foo"
    bus = "platform"
    module = "foo"

    [[device]]
    bus = "platform"
    name = "foo"
    id = 0
"""

from __future__ import annotations

import errno
import functools
import importlib.resources
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import trio

from .kernel import Device, Driver, Kernel, Module
from .kernel.class_ import Class
from .kernel.control import add_hardware_controls
from .kernel.core import device_add
from .kernel.dd import device_driver_attach
from .kernel.devcoredump import DEVCD_TIMEOUT
from .kernel.driver import driver_register
from .kernel.hotplug import HotplugDevice
from .kernel.module import load_module
from .kernel.pci import PCI_ANY_ID, PciBar, PciDevice, PciDeviceId, PciSlot, pci_bus
from .kernel.platform import PlatformDevice
from .kernel.simchar import BEHAVIOURS
from .kernel.simdrv import (
    SimBehaviour,
    SimHotplugDriver,
    SimPciDriver,
    SimPlatformDriver,
    errno_by_name,
)
from .kernel.simdump import DUMP_ERAS, DUMP_FORMATS, DumpSpec, DumpSupport
from .kernfs import ErrnoError

BUSES = ("platform", "pci", "hotplug")
T = TypeVar("T")


class ScenarioError(Exception):
    """A scenario that cannot be built; the message is one line for the user."""


@dataclass
class DriverSpec:
    name: str
    bus: str
    module: str | None
    id_table: list[str] = field(default_factory=list)
    pci_ids: list[PciDeviceId] = field(default_factory=list)
    probe_errno: int | None = None
    policy: str | None = None
    dump: DumpSpec | None = None
    cls: str = "lifetime"
    node: str | None = None
    mode: int = 0o600


@dataclass
class DeviceSpec:
    bus: str
    name: str
    id: int = -1
    bind: bool = True
    slot: PciSlot | None = None
    driver: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    produce_every_ms: int = 0
    produce: bytes = b""
    suppliers: list[str] = field(default_factory=list)

    @property
    def dev_name(self) -> str:
        if self.bus == "hotplug":
            return f"hotplug{self.id}"
        return self.name if self.id == -1 else f"{self.name}.{self.id}"


@dataclass
class Scenario:
    source: str
    modules: list[str] = field(default_factory=list)
    drivers: list[DriverSpec] = field(default_factory=list)
    devices: list[DeviceSpec] = field(default_factory=list)

    async def boot(self, kernel: Kernel) -> None:
        """Build the machine in ``kernel``, which must be freshly booted: classes, then each
        module with its drivers (as insmod would), built-in drivers, then the devices."""
        for cls in dict.fromkeys(d.cls for d in self.drivers if d.policy is not None):
            Class(kernel, cls).register()
        for name in self.modules:
            await self.load_module(kernel, name)
        for spec in self.drivers:
            if spec.module is None:
                await driver_register(self._driver(kernel, spec, None))
        for i, dev_spec in enumerate(self.devices):
            try:
                await self._add_device(kernel, dev_spec)
            except ErrnoError as e:
                raise ScenarioError(
                    f"{self.source}: device[{i}]: {dev_spec.dev_name} cannot be added: "
                    f"{os.strerror(e.errno)} (an attribute name the device already has?)"
                ) from None
        kernel.module_loader = lambda name: self.load_module(kernel, name)

    async def load_module(self, kernel: Kernel, name: str) -> None:
        """init_module(): the module and the drivers it registers."""
        if name not in self.modules:
            raise ErrnoError(errno.ENOENT)

        async def init(module: Module) -> None:
            for spec in self.drivers:
                if spec.module == name:
                    await driver_register(self._driver(kernel, spec, module))

        await load_module(kernel, name, init)

    @staticmethod
    def _driver(kernel: Kernel, spec: DriverSpec, module: Module | None) -> Driver:
        behaviour: SimBehaviour
        if spec.policy is None:
            behaviour = SimBehaviour(module)
        else:
            behaviour = BEHAVIOURS[spec.policy](
                spec.name, module, kernel.classes[spec.cls], spec.node or spec.name, spec.mode
            )
        dump = DumpSupport(spec.dump, module) if spec.dump is not None else None
        if spec.bus == "platform":
            return SimPlatformDriver(
                kernel, spec.name, behaviour, spec.id_table, spec.probe_errno, dump
            )
        if spec.bus == "hotplug":
            return SimHotplugDriver(kernel, spec.name, behaviour, spec.probe_errno, dump)
        return SimPciDriver(kernel, spec.name, behaviour, spec.pci_ids, spec.probe_errno, dump)

    @staticmethod
    async def _add_device(kernel: Kernel, spec: DeviceSpec) -> None:
        """Add the device as the firmware would present it; ``driver`` binds it to that
        driver only (added with autoprobe off, then attached), ``bind = false`` leaves it
        unbound."""
        bus = kernel.buses[spec.bus]
        autoprobe = bus.drivers_autoprobe
        bus.drivers_autoprobe = spec.bind and spec.driver is None
        try:
            dev: Device
            if spec.slot is not None:
                pci_bus(kernel).slots.append(spec.slot)
                dev = PciDevice(kernel, spec.slot)
            elif spec.bus == "hotplug":
                dev = HotplugDevice(kernel, spec.id)
            else:
                dev = PlatformDevice(kernel, spec.name, spec.id)
            dev.hw.attrs.update(spec.attrs)
            dev.suppliers = list(spec.suppliers)
            add_hardware_controls(kernel, dev.name, dev.hw)
            if spec.produce_every_ms:
                period_ns, data, hw = spec.produce_every_ms * 1_000_000, spec.produce, dev.hw
                kernel.spawn(functools.partial(hw.produce, kernel.clock, period_ns, data))
            await device_add(dev)
        finally:
            bus.drivers_autoprobe = autoprobe
        if spec.driver is not None:
            await device_driver_attach(bus.drivers[spec.driver], dev)


# -- parsing and checking --


class _Entry:
    """One table of the file, with the reader that knows where it came from."""

    def __init__(self, source: str, where: str, table: object) -> None:
        self.source = source
        self.where = where
        if not isinstance(table, dict):
            self.fail(None, "a table")
        self.table: dict[str, Any] = table
        self.seen: set[str] = set()

    def fail(self, key: str | None, expected: str) -> NoReturn:
        at = f"{self.where}.{key}" if key else self.where
        raise ScenarioError(f"{self.source}: {at}: expected {expected}")

    def get(self, key: str, kind: type[T], expected: str, default: T | None = None) -> T:
        self.seen.add(key)
        if key not in self.table:
            if default is None:
                raise ScenarioError(f"{self.source}: {self.where}: missing field '{key}'")
            return default
        value = self.table[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(key, expected)
        return value

    def optional(self, key: str, kind: type[T], expected: str) -> T | None:
        if key not in self.table:
            self.seen.add(key)
            return None
        return self.get(key, kind, expected)

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise ScenarioError(f"{self.source}: {self.where}: unknown field '{unknown[0]}'")


def _entries(source: str, data: dict[str, Any], key: str) -> list[_Entry]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ScenarioError(f"{source}: {key}: expected an array of tables ([[{key}]])")
    return [_Entry(source, f"{key}[{i}]", item) for i, item in enumerate(items)]


def _u(bits: int) -> Callable[[_Entry, str, int | None], int]:
    def read(entry: _Entry, key: str, default: int | None) -> int:
        value = entry.get(key, int, f"an integer from 0 to {(1 << bits) - 1:#x}", default)
        if not 0 <= value < 1 << bits:
            entry.fail(key, f"an integer from 0 to {(1 << bits) - 1:#x}")
        return value

    return read


_u8, _u16, _u24, _u64 = _u(8), _u(16), _u(24), _u(64)


def _parse_policy(entry: _Entry, spec: DriverSpec) -> None:
    spec.policy = entry.optional("policy", str, "a policy name")
    if spec.policy is not None and spec.policy not in BEHAVIOURS:
        entry.fail("policy", " or ".join(repr(p) for p in BEHAVIOURS))
    if spec.policy is not None:
        spec.cls = entry.get("class", str, "a class name", "lifetime")
        spec.node = entry.optional("node", str, "a device node name prefix")
        spec.mode = entry.get("mode", int, "a mode such as 0o600", 0o600)
        if not 0 <= spec.mode <= 0o777:
            entry.fail("mode", "a mode such as 0o600")
    else:
        for key in ("class", "node", "mode"):
            if key in entry.table:
                entry.fail(key, "nothing: it needs a 'policy' (a character-device driver)")


def _parse_dump(entry: _Entry, spec: DriverSpec) -> None:
    era = entry.optional("dump", str, "a dump era")
    if era is not None:
        if era not in DUMP_ERAS:
            entry.fail("dump", " or ".join(repr(e) for e in DUMP_ERAS))
        size = entry.get("dump_size", int, "a size in bytes from 0 to 2**40", 1 << 20)
        if not 0 <= size <= 1 << 40:
            entry.fail("dump_size", "a size in bytes from 0 to 2**40")
        fmt = entry.get("dump_format", str, "'binary' or 'text'", "binary")
        if fmt not in DUMP_FORMATS:
            entry.fail("dump_format", "'binary' or 'text'")
        timeout = entry.get("dump_timeout", int, "a timeout in seconds", int(DEVCD_TIMEOUT))
        if timeout < 0:
            entry.fail("dump_timeout", "a timeout in seconds")
        spec.dump = DumpSpec(era, size, fmt, float(timeout))
    else:
        for key in ("dump_size", "dump_format", "dump_timeout"):
            if key in entry.table:
                entry.fail(key, "nothing: it needs a 'dump' era")


def _parse_driver(entry: _Entry, modules: list[str]) -> DriverSpec:
    name = entry.get("name", str, "a string")
    bus = entry.get("bus", str, "a string")
    if bus not in BUSES:
        entry.fail("bus", " or ".join(repr(b) for b in BUSES))
    module = entry.optional("module", str, "a string")
    if module is not None and module not in modules:
        entry.fail("module", f"the name of a [[module]] (no module '{module}')")
    spec = DriverSpec(name, bus, module)
    probe_errno = entry.optional("probe_errno", str, 'an errno name such as "ENOMEM"')
    if probe_errno is not None:
        try:
            spec.probe_errno = errno_by_name(probe_errno)
        except ValueError:
            entry.fail("probe_errno", 'an errno name such as "ENOMEM"')
    _parse_policy(entry, spec)
    _parse_dump(entry, spec)
    if bus == "platform":
        id_table = entry.get("id_table", list, "an array of device names", [])
        if not all(isinstance(x, str) for x in id_table):
            entry.fail("id_table", "an array of device names")
        spec.id_table = id_table
    elif bus == "pci":
        for i, item in enumerate(entry.get("ids", list, "an array of tables", [])):
            ids = _Entry(entry.source, f"{entry.where}.ids[{i}]", item)
            spec.pci_ids.append(
                PciDeviceId(
                    vendor=_u16(ids, "vendor", PCI_ANY_ID) if "vendor" in item else PCI_ANY_ID,
                    device=_u16(ids, "device", PCI_ANY_ID) if "device" in item else PCI_ANY_ID,
                    class_code=_u24(ids, "class", 0),
                    class_mask=_u24(ids, "class_mask", 0),
                )
            )
            ids.seen.update({"vendor", "device"})
            ids.done()
        if not spec.pci_ids:
            entry.fail("ids", "at least one PCI id ({vendor = 0x..., device = 0x...})")
    entry.done()
    return spec


def _parse_device(entry: _Entry, drivers: set[tuple[str, str]]) -> DeviceSpec:
    bus = entry.get("bus", str, "a string")
    if bus not in BUSES:
        entry.fail("bus", " or ".join(repr(b) for b in BUSES))
    spec = _parse_bus_device(entry, bus)
    spec.bind = entry.get("bind", bool, "true or false", True)
    spec.driver = entry.optional("driver", str, "a driver name")
    if spec.driver is not None and not spec.bind:
        entry.fail("driver", "no driver for a device with bind = false")
    if spec.driver is not None and (bus, spec.driver) not in drivers:
        entry.fail("driver", f"the name of a [[driver]] on bus '{bus}' (no '{spec.driver}')")
    attrs = entry.get("attrs", dict, "a table of attribute names and text values", {})
    for name, value in attrs.items():
        if not isinstance(value, str) or "/" in name or name in (".", ".."):
            entry.fail(f"attrs.{name}", "a text value, under a plain file name")
    spec.attrs = dict(attrs)
    spec.produce_every_ms = entry.get("produce_every_ms", int, "a period in milliseconds", 0)
    if spec.produce_every_ms < 0:
        entry.fail("produce_every_ms", "a period in milliseconds")
    spec.produce = entry.get("produce", str, "the text the device produces", "").encode()
    if bool(spec.produce_every_ms) != bool(spec.produce):
        entry.fail("produce", "both 'produce' and 'produce_every_ms', or neither")
    spec.suppliers = entry.get("suppliers", list, "an array of device names", [])
    if not all(isinstance(name, str) and name for name in spec.suppliers):
        entry.fail("suppliers", "an array of device names")
    entry.done()
    return spec


def _parse_bus_device(entry: _Entry, bus: str) -> DeviceSpec:
    """The fields that say which device it is, per bus."""
    if bus == "platform":
        name = entry.get("name", str, "a string")
        dev_id = entry.get("id", int, "an integer (-1 for none)", -1)
        return DeviceSpec(bus, name, dev_id)
    if bus == "hotplug":
        dev_id = entry.get("id", int, "an integer from 0 to 2147483647")
        if not 0 <= dev_id <= 2**31 - 1:
            entry.fail("id", "an integer from 0 to 2147483647")
        return DeviceSpec(bus, "hotplug", dev_id)
    slot_name = entry.get("slot", str, 'a PCI slot name such as "0000:00:02.0"')
    bars = []
    for i, item in enumerate(entry.get("bars", list, "an array of tables", [])):
        bar = _Entry(entry.source, f"{entry.where}.bars[{i}]", item)
        bars.append(
            PciBar(
                _u64(bar, "start", None),
                _u64(bar, "size", None),
                bar.get("prefetch", bool, "true or false", False),
                bar.get("io", bool, "true or false", False),
            )
        )
        bar.done()
    slot = PciSlot(
        slot_name,
        _u16(entry, "vendor", None),
        _u16(entry, "device", None),
        _u16(entry, "subsystem_vendor", 0),
        _u16(entry, "subsystem_device", 0),
        _u24(entry, "class", 0),
        _u8(entry, "revision", 0),
        _u8(entry, "irq", 0),
        bars,
    )
    return DeviceSpec(bus, slot_name, slot=slot)


def parse(text: str, source: str) -> Scenario:
    """Check a scenario's text; raises :class:`ScenarioError` on the first problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    unknown = sorted(set(data) - {"module", "driver", "device"})
    if unknown:
        raise ScenarioError(
            f"{source}: unknown table '{unknown[0]}' (expected [[module]], [[driver]], [[device]])"
        )
    scenario = Scenario(source)
    for entry in _entries(source, data, "module"):
        name = entry.get("name", str, "a string")
        if name in scenario.modules:
            entry.fail("name", f"a unique module name ('{name}' is used twice)")
        entry.done()
        scenario.modules.append(name)
    seen_drivers: set[tuple[str, str]] = set()
    for entry in _entries(source, data, "driver"):
        drv = _parse_driver(entry, scenario.modules)
        if (drv.bus, drv.name) in seen_drivers:
            entry.fail("name", f"a unique driver name on its bus ('{drv.name}' is used twice)")
        seen_drivers.add((drv.bus, drv.name))
        scenario.drivers.append(drv)
    seen_devices: set[tuple[str, str]] = set()
    for entry in _entries(source, data, "device"):
        dev = _parse_device(entry, seen_drivers)
        if (dev.bus, dev.dev_name) in seen_devices:
            where = "slot" if dev.bus == "pci" else "name"
            entry.fail(where, f"a unique device ('{dev.dev_name}' is used twice)")
        seen_devices.add((dev.bus, dev.dev_name))
        scenario.devices.append(dev)
    return scenario


def load(name_or_path: str | None) -> Scenario:
    """A shipped scenario by name (``default`` when None), or a TOML file by path."""
    if name_or_path is None:
        name_or_path = "default"
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ScenarioError(f"{name_or_path}: cannot read: {e.strerror}") from None
        return parse(text, str(path))
    shipped = importlib.resources.files("fakesys.scenarios") / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ScenarioError(f"{name_or_path}: no such scenario file or shipped scenario")
    return parse(shipped.read_text(encoding="utf-8"), f"{name_or_path}.toml")


async def boot(
    scenario: Scenario,
    nursery: trio.Nursery | None = None,
    configure: Callable[[Kernel], None] | None = None,
) -> Kernel:
    """A kernel booted with ``scenario``'s machine; deferred work runs in ``nursery``.
    ``configure`` sees the kernel before its first event (to attach a netlink broadcast)."""
    kernel = Kernel()
    kernel.nursery = nursery
    if configure is not None:
        configure(kernel)
    await kernel.boot()
    await scenario.boot(kernel)
    return kernel
