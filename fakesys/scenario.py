"""Scenarios: a machine described as data (TOML), and the boot that builds it.

A scenario lists ``[[module]]``, ``[[driver]]`` and ``[[device]]`` entries, and an optional
``[kernel]`` table. It is checked whole before anything is built: an error names the file, the
entry and the field and says what was expected, and no mount happens. Drivers register before
devices are added, so devices are probed as they appear, as at boot; a device with
``bind = false`` is added with the bus's ``drivers_autoprobe`` off and so stays unbound until
someone writes its name to ``bind``.

A scenario may also hold a recording of a real machine (the ``[recording]`` and ``[sys.*]``
tables ``fakesys record`` writes, see :mod:`fakesys.record`), or name one with
``include = "FILE"`` (relative to the scenario). The recorded machine is booted first, in
place of the built-in root devices; a ``[[device]]`` entry with a ``path`` gives a recorded
device another driver (``driver``) or leaves it unbound (``bind = false``).

A driver is code: ``impl`` names a shipped driver (``impl = "cdev_devm"``, a file of
:mod:`fakesys.drivers`), a driver file relative to the scenario (``impl = "mydriver.py"``,
or ``"mydriver.py:my_driver"`` when the file defines several), or a Python module path
(``impl = "mypkg.mydriver"``). The entry's other fields override what the file says: its
``name``, its ``bus`` and its ids, and ``probe_errno`` makes its probe fail (error
injection). The drivers of one ``[[module]]`` make up that module; its ``params`` are the
module parameters its files read. The older fields keep working: ``policy`` names a shipped
character-device driver, ``dump`` a shipped dumping driver and the devcoredump core it runs
on, and an entry with neither is the plain ``foo`` driver under its own name.

Example::

    [[module]]
    name = "foo"

    [[driver]]
    name = "foo"
    bus = "platform"
    module = "foo"
    impl = "foo"

    [[device]]
    bus = "platform"
    name = "foo"
    id = 0
"""

from __future__ import annotations

import errno
import functools
import importlib.resources
import importlib.util
import json
import os
import re
import tomllib
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import trio

from .drivers.recorded import recorded_driver
from .kernel import Device, Driver, Kernel
from .kernel.control import add_hardware_controls
from .kernel.core import device_add
from .kernel.dd import device_driver_attach
from .kernel.deferred_probe import EPROBE_DEFER
from .kernel.devcoredump import CORE_FIXED, CORE_PRE_FIX, CORE_SEED, DEVCD_CORES
from .kernel.hotplug import HotplugDevice
from .kernel.module import load_builtin, load_module
from .kernel.pci import PCI_ANY_ID, PciBar, PciDevice, PciDeviceId, PciSlot, pci_bus
from .kernel.platform import PlatformDevice
from .kernel.printk import KERN_ERR
from .kernel.replay import RecordedMachine, Recording, replay
from .kernel.stacktrace import BOOT_FRAMES, enter
from .kernfs import ErrnoError
from .record import RecordingError
from .record import loads as recording_loads

BUSES = ("platform", "pci", "hotplug")
SHIPPED_DRIVERS = Path(__file__).parent / "drivers"
# The older fields: a character-device policy names a shipped driver ...
POLICIES = {
    "devm": "cdev_devm",
    "refcounted": "cdev_refcounted",
    "revoke": "cdev_revoke",
    "unplug": "cdev_unplug",
    "irq-devm": "cdev_irq_devm",
    "irq-fixed": "cdev_irq_fixed",
    "modref-racy": "cdev_modref_racy",
    "modref-locked": "cdev_modref_locked",
}
# ... and a dump era a shipped dumping driver and the devcoredump core it runs on.
DUMP_ERAS = {
    "legacy": ("dump_legacy", CORE_PRE_FIX),
    "put": ("dump_put", CORE_PRE_FIX),
    "fixed": ("dump_put", CORE_FIXED),
    "seed": ("dump_standalone", CORE_SEED),
}
DUMP_FORMATS = ("binary", "text")
T = TypeVar("T")

# What a name that becomes a directory entry of the tree must be. kobject_add_internal()
# refuses an empty name, kobject_set_name_vargs() rewrites a '/' (sysfs names never hold one),
# and no directory entry can be '.', '..', hold a NUL or be longer than NAME_MAX. The
# kernel's rewriting is not imitated: a scenario with such a name is refused instead.
NAME_MAX = 255
SYSFS_NAME = "a sysfs name (not empty, not '.' or '..', no '/' or NUL, at most 255 bytes)"
# include/linux/module.h: char name[MODULE_NAME_LEN] in struct module, NUL included
MODULE_NAME_LEN = 56
MODULE_NAME = "a module name (not empty, not '.' or '..', no '/' or NUL, at most 55 bytes)"
NODE_NAME = 'a device node name such as "video" or "dri/card" (each part a sysfs name)'
# The name pci_setup_device() gives a function: "%04x:%02x:%02x.%d" of domain, bus, device
# (5 bits) and function (3 bits).
PCI_SLOT = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:(?P<device>[0-9a-f]{2})\.[0-7]")
PCI_SLOT_NAME = (
    'a PCI slot name such as "0000:00:02.0" (domain:bus:device.function in lowercase hex, '
    "device at most 1f, function at most 7)"
)


def is_sysfs_name(name: str, limit: int = NAME_MAX) -> bool:
    """Whether ``name`` can be a directory entry of the tree (see :data:`SYSFS_NAME`)."""
    return (
        name not in ("", ".", "..")
        and "/" not in name
        and "\0" not in name
        and len(name.encode()) <= limit
    )


def _toml_key(key: str) -> str:
    """``key`` as TOML writes it in a dotted key: bare when it can be, quoted otherwise."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


class ScenarioError(Exception):
    """A scenario that cannot be built; the message is one line for the user."""


@dataclass
class DriverSpec:
    """A ``[[driver]]``: the code, and what the scenario overrides of it."""

    where: str  # "s.toml: driver[3]", for errors
    path: Path
    var: str | None  # the driver object's name in the file, if the file has several
    module: str | None
    name: str | None = None
    bus: str | None = None
    id_table: list[str] | None = None
    pci_ids: list[PciDeviceId] | None = None
    probe_errno: int | None = None
    params: dict[str, object] = field(default_factory=dict)
    devcoredump: str | None = None


@dataclass
class ModuleSpec:
    name: str
    params: dict[str, object] = field(default_factory=dict)
    devcoredump: str | None = None


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
    modules: list[ModuleSpec] = field(default_factory=list)
    drivers: list[DriverSpec] = field(default_factory=list)
    devices: list[DeviceSpec] = field(default_factory=list)
    devcoredump: str = CORE_FIXED
    recording: Recording | None = None
    #: Recorded device path -> the driver the scenario gives it (None: leave it unbound).
    bindings: dict[str, str | None] = field(default_factory=dict)

    @property
    def module_names(self) -> list[str]:
        return [m.name for m in self.modules]

    async def boot(self, kernel: Kernel) -> None:
        """Build the machine in ``kernel``, which must be freshly booted: the recorded machine
        if there is one, each module with its drivers (as insmod would), then the built-in
        drivers, then the devices."""
        kernel.devcoredump.core = self.devcoredump
        if self.recording is not None:
            machine = await replay(kernel, self.recording, recorded_driver, self.bindings)
            kernel.platform_bus_device = machine.present.get(
                "devices/platform", kernel.platform_bus_device
            )
            kernel.pci_host_bridge = machine.present.get(
                "devices/pci0000:00", kernel.pci_host_bridge
            )
        await kernel.add_root_devices(spec.bus for spec in self.devices)
        for module in self.modules:
            await self._load(kernel, module.name)
        builtin = [spec for spec in self.drivers if spec.module is None]
        if builtin:
            await self._boot_step(
                kernel,
                "built-in drivers",
                load_builtin(
                    kernel, [(s.path, s.params) for s in builtin], self._configure(kernel, builtin)
                ),
            )
        for i, dev_spec in enumerate(self.devices):
            try:
                with enter(BOOT_FRAMES):
                    await self._add_device(kernel, dev_spec)
            except ErrnoError as e:
                raise ScenarioError(
                    f"{self.source}: device[{i}]: {dev_spec.dev_name} cannot be added: "
                    f"{os.strerror(e.errno)} (an attribute name the device already has?)"
                ) from None
            except KeyError as e:
                raise ScenarioError(
                    f"{self.source}: device[{i}].driver: no driver {e} on bus '{dev_spec.bus}'"
                ) from None
        kernel.module_loader = lambda name: self.load_module(kernel, name)

    async def _boot_step(self, kernel: Kernel, what: str, step: Awaitable[object]) -> None:
        """Run one step of the boot; what goes wrong in a driver file is the scenario's. A
        failed init is said with the errors the kernel logged meanwhile, which tell why (no
        dynamic major left, ...), as dmesg would after insmod."""
        logged = kernel.log.next_seq
        try:
            await step
        except ScenarioError:
            raise
        except ErrnoError as e:
            errors = [r.text for r in kernel.log.records(logged) if r.level <= KERN_ERR]
            why = f" ({'; '.join(errors)})" if errors else ""
            raise ScenarioError(
                f"{self.source}: {what}: init failed: {os.strerror(e.errno)}{why}"
            ) from None
        except Exception as e:  # a driver file that does not load
            raise ScenarioError(f"{self.source}: {what}: {_describe(e)}") from None

    async def _load(self, kernel: Kernel, name: str) -> None:
        await self._boot_step(kernel, f"module {name}", self.load_module(kernel, name))

    async def load_module(self, kernel: Kernel, name: str) -> None:
        """init_module(): the module, built from the files of its drivers."""
        module = next((m for m in self.modules if m.name == name), None)
        if module is None:
            raise ErrnoError(errno.ENOENT)
        specs = [spec for spec in self.drivers if spec.module == name]
        params = dict(module.params)
        for spec in specs:
            params.update(spec.params)
        loaded = await load_module(
            kernel,
            name,
            paths=[spec.path for spec in specs],
            params=params,
            configure=self._configure(kernel, specs),
        )
        loaded.devcoredump_core = module.devcoredump or next(
            (spec.devcoredump for spec in specs if spec.devcoredump), None
        )

    def _configure(
        self, kernel: Kernel, specs: list[DriverSpec]
    ) -> Callable[[list[types.ModuleType]], None]:
        """What the scenario overrides in each file's driver, before the module's init."""

        def configure(codes: list[types.ModuleType]) -> None:
            for spec, code in zip(specs, codes, strict=True):
                drv = _driver_of(spec, code)
                if spec.name is not None:
                    drv.name = spec.name
                elif not is_sysfs_name(drv.name):
                    raise ScenarioError(
                        f"{spec.where}.impl: {spec.path}: expected a driver "
                        f"named by {SYSFS_NAME}, not {drv.name!r}"
                    )
                if spec.bus is not None:
                    drv.bus = kernel.buses[spec.bus]
                if spec.id_table is not None:
                    drv.id_table = tuple(spec.id_table)
                if spec.pci_ids is not None:
                    drv.id_table = tuple(spec.pci_ids)
                if spec.probe_errno is not None:
                    if drv.probe_fn is None:
                        raise ScenarioError(f"{spec.where}.probe_errno: the driver has no probe")
                    kernel.fail_function[drv.probe_fn] = spec.probe_errno

        return configure

    @staticmethod
    async def _add_device(kernel: Kernel, spec: DeviceSpec) -> None:
        """Add the device as the firmware would present it; ``driver`` binds it to that
        driver only (added with autoprobe off, then attached), ``bind = false`` leaves it
        unbound."""
        bus = kernel.buses[spec.bus]
        driver = bus.drivers[spec.driver] if spec.driver is not None else None
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
        if driver is not None:
            await device_driver_attach(driver, dev)


def _describe(e: Exception) -> str:
    """One line for an exception raised by loading a driver file."""
    if isinstance(e, SyntaxError):
        return f"{e.filename}:{e.lineno}: does not load: {e.msg}"
    tb = e.__traceback__
    place = ""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename not in (__file__,) and "/fakesys/kernel/" not in (
            tb.tb_frame.f_code.co_filename
        ):
            place = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}: "
        tb = tb.tb_next
    return f"{place}does not load: {type(e).__name__}: {e}"


def _driver_of(spec: DriverSpec, code: types.ModuleType) -> Driver:
    """The driver a [[driver]] entry means in its file: the named one, or the only one."""
    where = f"{spec.where}.impl: {spec.path}"
    if spec.var is not None:
        drv = getattr(code, spec.var, None)
        if not isinstance(drv, Driver):
            raise ScenarioError(f"{where}: '{spec.var}' is not a driver defined in the file")
        return drv
    drivers = [(n, v) for n, v in vars(code).items() if isinstance(v, Driver)]
    if not drivers:
        raise ScenarioError(
            f"{where}: defines no driver (a PlatformDriver, PciDriver or HotplugDriver at "
            "the top level of the file)"
        )
    if len(drivers) > 1:
        names = ", ".join(n for n, _ in drivers)
        raise ScenarioError(f"{where}: defines several drivers ({names}): name one, as "
                            f"'{spec.path.name}:{drivers[0][0]}'")  # fmt: skip
    return drivers[0][1]


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

    def name(
        self,
        key: str,
        expected: str = SYSFS_NAME,
        limit: int = NAME_MAX,
        default: str | None = None,
    ) -> str:
        """A string that becomes a name in the tree, checked as the kernel's naming rules
        require (:func:`is_sysfs_name`)."""
        value = self.get(key, str, expected, default)
        if not is_sysfs_name(value, limit):
            self.fail(key, expected)
        return value

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


def errno_by_name(name: str) -> int:
    """``"ENOMEM"`` → 12, and the kernel's own ``"EPROBE_DEFER"``; ValueError if unknown."""
    if name == "EPROBE_DEFER":
        return EPROBE_DEFER
    value = getattr(errno, name, None)
    if not name.startswith("E") or not isinstance(value, int):
        raise ValueError(f"unknown errno name {name!r}")
    return value


def resolve_impl(entry: _Entry, impl: str, base: Path | None) -> tuple[Path, str | None]:
    """The driver file ``impl`` names, and the driver's name in it if given (``:name``)."""
    target, _, var = impl.partition(":")
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            entry.fail("impl", f"a driver file (no file {path})")
    elif (SHIPPED_DRIVERS / f"{target}.py").is_file() and not target.startswith("_"):
        path = SHIPPED_DRIVERS / f"{target}.py"
    else:
        try:
            found = importlib.util.find_spec(target)
        except (ImportError, ValueError):
            found = None
        if found is None or found.origin is None or not found.origin.endswith(".py"):
            shipped = ", ".join(sorted(p.stem for p in SHIPPED_DRIVERS.glob("[a-z]*.py")))
            entry.fail("impl", f"a shipped driver ({shipped}), a .py file or a module path")
        path = Path(found.origin)
    return path, var or None


def _parse_legacy(entry: _Entry, spec: DriverSpec, name: str) -> str:
    """The older ``policy``/``dump`` fields: the shipped driver they stand for, with the
    module parameters and devcoredump core they imply."""
    policy = entry.optional("policy", str, "a policy name")
    era = entry.optional("dump", str, "a dump era")
    if policy is not None and era is not None:
        entry.fail("dump", "no 'dump' with a 'policy': a driver with a node that dumps is "
                   'code of its own (impl = "fakegpu", or a driver file of yours)')  # fmt: skip
    if policy is not None:
        if policy not in POLICIES:
            entry.fail("policy", " or ".join(repr(p) for p in POLICIES))
        spec.params["class"] = entry.name("class", default="lifetime")
        node = entry.get("node", str, NODE_NAME, name)
        if not all(map(is_sysfs_name, node.split("/"))):
            entry.fail("node", NODE_NAME)
        spec.params["node"] = node
        mode = entry.get("mode", int, "a mode such as 0o600", 0o600)
        if not 0 <= mode <= 0o777:
            entry.fail("mode", "a mode such as 0o600")
        spec.params["mode"] = mode
        return POLICIES[policy]
    for key in ("class", "node", "mode"):
        if key in entry.table:
            entry.fail(key, "nothing: it needs a 'policy' (a character-device driver)")
    if era is None:
        for key in ("dump_size", "dump_format", "dump_timeout"):
            if key in entry.table:
                entry.fail(key, "nothing: it needs a 'dump' era")
        return "foo"
    if era not in DUMP_ERAS:
        entry.fail("dump", " or ".join(repr(e) for e in DUMP_ERAS))
    impl, spec.devcoredump = DUMP_ERAS[era]
    size = entry.get("dump_size", int, "a size in bytes from 0 to 2**40", 1 << 20)
    if not 0 <= size <= 1 << 40:
        entry.fail("dump_size", "a size in bytes from 0 to 2**40")
    fmt = entry.get("dump_format", str, "'binary' or 'text'", "binary")
    if fmt not in DUMP_FORMATS:
        entry.fail("dump_format", "'binary' or 'text'")
    spec.params.update(size=size, format=fmt)
    if "dump_timeout" in entry.table:
        timeout = entry.get("dump_timeout", int, "a timeout in seconds")
        if timeout < 0:
            entry.fail("dump_timeout", "a timeout in seconds")
        spec.params["timeout"] = timeout
    return impl


def _parse_ids(entry: _Entry, spec: DriverSpec) -> None:
    """The id table the scenario gives the driver, in its bus's form."""
    if "id_table" in entry.table:
        id_table = entry.get("id_table", list, "an array of device names")
        if not all(isinstance(x, str) for x in id_table):
            entry.fail("id_table", "an array of device names")
        spec.id_table = id_table
    if "ids" in entry.table:
        spec.pci_ids = []
        for i, item in enumerate(entry.get("ids", list, "an array of tables")):
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


def _parse_driver(
    entry: _Entry, modules: list[str], base: Path | None, buses: tuple[str, ...] = BUSES
) -> DriverSpec:
    """``buses``: those a driver may go on (with a recording, its buses too)."""
    impl = entry.optional("impl", str, 'a driver: "cdev_devm", "mydriver.py" or a module path')
    # Given, or (with impl) taken from the driver file, where it is checked at boot.
    name = entry.name("name") if impl is None or "name" in entry.table else None
    bus = (
        entry.get("bus", str, "a string")
        if impl is None
        else entry.optional("bus", str, "a string")
    )
    if bus is not None and bus not in buses:
        entry.fail("bus", " or ".join(repr(b) for b in buses))
    module = entry.optional("module", str, "a string")
    if module is not None and module not in modules:
        entry.fail("module", f"the name of a [[module]] (no module '{module}')")
    spec = DriverSpec(f"{entry.source}: {entry.where}", Path(), None, module, name, bus)
    if impl is None:
        assert name is not None
        impl = _parse_legacy(entry, spec, name)
    else:
        for key in ("policy", "dump", "class", "node", "mode", "dump_size", "dump_format",
                    "dump_timeout"):  # fmt: skip
            if key in entry.table:
                entry.fail(key, "nothing with 'impl': give module parameters in [[module]] params")
    spec.path, spec.var = resolve_impl(entry, impl, base)
    probe_errno = entry.optional("probe_errno", str, 'an errno name such as "ENOMEM"')
    if probe_errno is not None:
        try:
            spec.probe_errno = errno_by_name(probe_errno)
        except ValueError:
            entry.fail("probe_errno", 'an errno name such as "ENOMEM"')
    _parse_ids(entry, spec)
    entry.done()
    return spec


def _parse_module(entry: _Entry) -> ModuleSpec:
    module = ModuleSpec(entry.name("name", MODULE_NAME, MODULE_NAME_LEN - 1))
    params = entry.get("params", dict, "a table of module parameters", {})
    for key, value in params.items():
        if not isinstance(value, str | int | bool):
            entry.fail(f"params.{key}", "a string, an integer or a boolean")
    module.params = dict(params)
    module.devcoredump = entry.optional("devcoredump", str, "a devcoredump core")
    if module.devcoredump is not None and module.devcoredump not in DEVCD_CORES:
        entry.fail("devcoredump", " or ".join(repr(c) for c in DEVCD_CORES))
    entry.done()
    return module


def _parse_device(
    entry: _Entry, drivers: set[tuple[str, str]], checkable: set[str] | None
) -> DeviceSpec:
    """``checkable``: None when some driver's name or bus comes from its file, so that a
    device's ``driver`` can only be checked at boot."""
    bus = entry.get("bus", str, "a string")
    if bus not in BUSES:
        entry.fail("bus", " or ".join(repr(b) for b in BUSES))
    spec = _parse_bus_device(entry, bus)
    spec.bind = entry.get("bind", bool, "true or false", True)
    spec.driver = entry.optional("driver", str, "a driver name")
    if spec.driver is not None and not spec.bind:
        entry.fail("driver", "no driver for a device with bind = false")
    if spec.driver is not None and checkable is not None and (bus, spec.driver) not in drivers:
        entry.fail("driver", f"the name of a [[driver]] on bus '{bus}' (no '{spec.driver}')")
    attrs = entry.get("attrs", dict, "a table of attribute names and text values", {})
    for name, value in attrs.items():
        if not is_sysfs_name(name):
            entry.fail(f"attrs.{_toml_key(name)}", f"an attribute name that is {SYSFS_NAME}")
        if not isinstance(value, str):
            entry.fail(f"attrs.{_toml_key(name)}", "a text value")
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
        name = entry.name("name")
        dev_id = entry.get("id", int, "an integer (-1 for none)", -1)
        spec = DeviceSpec(bus, name, dev_id)
        if not is_sysfs_name(spec.dev_name):  # the name and its ".<id>" together
            entry.fail("name", SYSFS_NAME)
        return spec
    if bus == "hotplug":
        dev_id = entry.get("id", int, "an integer from 0 to 2147483647")
        if not 0 <= dev_id <= 2**31 - 1:
            entry.fail("id", "an integer from 0 to 2147483647")
        return DeviceSpec(bus, "hotplug", dev_id)
    slot_name = entry.get("slot", str, PCI_SLOT_NAME)
    slot_match = PCI_SLOT.fullmatch(slot_name)
    if slot_match is None or int(slot_match["device"], 16) > 0x1F:
        entry.fail("slot", PCI_SLOT_NAME)
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


def _recording(data: dict[str, Any], source: str, base: Path | None) -> Recording | None:
    """The recording the scenario holds (``[recording]``) or includes (``include``)."""
    if "include" in data:
        include = data["include"]
        if not isinstance(include, str) or "recording" in data or "sys" in data:
            raise ScenarioError(f"{source}: include: expected the path of a recording, "
                                "in a scenario that holds none")  # fmt: skip
        path = (base or Path()) / include
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise ScenarioError(f"{source}: include: {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError(f"{path}: not valid TOML: {e}") from None
        if "recording" not in data:
            raise ScenarioError(f"{source}: include: {path} is not a recording")
        source = str(path)
    elif "recording" not in data:
        if "sys" in data:
            raise ScenarioError(f"{source}: sys: a recording needs its [recording] table")
        return None
    try:
        return recording_loads(data, source)
    except RecordingError as e:
        raise ScenarioError(str(e)) from None


def _parse_binding(
    entry: _Entry,
    scenario: Scenario,
    recorded: RecordedMachine,
    drivers: set[tuple[str, str]] | None,
) -> None:
    """A ``[[device]]`` with a ``path``: a recorded device given another driver, or none.
    ``drivers``: None when some driver's name or bus comes from its file, so that the
    ``driver`` can only be checked at boot."""
    path = entry.get("path", str, "the path of a recorded device").removeprefix("/sys/")
    record = recorded.devices.get(path)
    if record is None or record.bus is None:
        entry.fail("path", "the path of a recorded device on a bus, such as "
                           '"/sys/devices/pci0000:00/0000:00:03.0"')  # fmt: skip
    bind = entry.get("bind", bool, "true or false", True)
    driver = entry.optional("driver", str, "a driver name")
    if driver is not None and not bind:
        entry.fail("driver", "no driver for a device with bind = false")
    known = (drivers or set()) | {(d.bus, d.name) for d in recorded.drivers}
    if driver is not None and drivers is not None and (record.bus, driver) not in known:
        entry.fail("driver", f"the name of a driver on bus '{record.bus}' (no '{driver}')")
    if path in scenario.bindings:
        entry.fail("path", f"a unique device ('{path}' is used twice)")
    entry.done()
    scenario.bindings[path] = driver if bind else None


def parse(text: str, source: str, base: Path | None = None) -> Scenario:
    """Check a scenario's text; raises :class:`ScenarioError` on the first problem.
    ``base`` is the directory relative driver files are found in."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{source}: not valid TOML: {e}") from None
    tables = {"kernel", "module", "driver", "device", "include", "recording", "sys"}
    unknown = sorted(set(data) - tables)
    if unknown:
        raise ScenarioError(
            f"{source}: unknown table '{unknown[0]}' (expected [kernel], [[module]], "
            "[[driver]], [[device]], include, or a recording)"
        )
    scenario = Scenario(source, recording=_recording(data, source, base))
    if "kernel" in data:
        kernel = _Entry(source, "kernel", data["kernel"])
        scenario.devcoredump = kernel.get("devcoredump", str, "a devcoredump core", CORE_FIXED)
        if scenario.devcoredump not in DEVCD_CORES:
            kernel.fail("devcoredump", " or ".join(repr(c) for c in DEVCD_CORES))
        kernel.done()
    for entry in _entries(source, data, "module"):
        module = _parse_module(entry)
        if module.name in scenario.module_names:
            entry.fail("name", f"a unique module name ('{module.name}' is used twice)")
        scenario.modules.append(module)
    recorded = RecordedMachine(scenario.recording) if scenario.recording else None
    buses = BUSES + tuple(b for b in recorded.buses if b not in BUSES) if recorded else BUSES
    seen_drivers: set[tuple[str, str]] = set()
    for entry in _entries(source, data, "driver"):
        drv = _parse_driver(entry, scenario.module_names, base, buses)
        if drv.name is not None and drv.bus is not None:
            if (drv.bus, drv.name) in seen_drivers:
                entry.fail("name", f"a unique driver name on its bus ('{drv.name}' is used twice)")
            seen_drivers.add((drv.bus, drv.name))
        scenario.drivers.append(drv)
    named = {d.name for d in scenario.drivers if d.name is not None}
    anonymous = any(d.name is None or d.bus is None for d in scenario.drivers)
    seen_devices: set[tuple[str, str]] = set()
    for entry in _entries(source, data, "device"):
        if "path" in entry.table and recorded is not None:
            _parse_binding(entry, scenario, recorded, seen_drivers if not anonymous else None)
            continue
        dev = _parse_device(entry, seen_drivers, named if not anonymous else None)
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
        return parse(text, str(path), path.parent)
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
    await kernel.boot(root_devices=scenario.recording is None)
    await scenario.boot(kernel)
    return kernel
