"""A recorded machine in the driver core: the devices, buses, classes, drivers and files a
recording of a real ``/sys`` shows, with the driver core's own behaviour on top.

Limitations first: what a recording holds is what userspace could read, so a replayed machine
is frozen hardware. Every file shows what it showed when recorded (counters and times stand
still); a write to a writable one is kept and shown back, and changes nothing else. A
recorded driver knows no id table: it matches exactly the devices the recording shows bound
to it (or those a scenario gives it), and a recorded device matches only that driver. What a
driver did besides registering child devices (attributes it added to its device, MSI
vectors, ...) stays when it unbinds. Recorded devices have no ``/dev`` node, since no driver
code stands behind it, and recorded modules cannot be unloaded.

What is live is the driver core's part, built the way the kernel builds it: every recorded
device is a :class:`~.core.Device` on its bus or in its class, added with device_add(), so
its ``uevent`` (``DRIVER=`` while bound), ``subsystem``, ``driver``, ``device``, ``dev`` and
``driver_override`` files, and the links to it in ``/sys/bus``, ``/sys/class`` and
``/sys/dev``, are the engine's own. Every recorded driver is registered on its bus with
``bind``, ``unbind`` and ``uevent``. Buses and classes that fakesys builds in (platform, pci,
pci_bus) take the recorded devices as they are, the bus's own files being left to the
recording; the others are generic ones of the recorded name. The recorded root devices
(``devices/platform``, ``devices/pci0000:00``) stand in for the built-in ones. The
devcoredump class stays the engine's: a recorded dump is not replayed.

The devices a driver made (its *children*: the ``virtio0`` of a virtio-pci function, the
``net/eth0`` of virtio-net, the ``block/vda`` of virtio-blk) appear only while it is bound:
unbinding takes them away with their subtrees, binding brings them back as recorded. Which
devices those are is part of the recording (``Recording.driver_children``); the recorder
guesses it from the tree (see :mod:`fakesys.record`).

The recording's paths are relative to ``/sys``. A directory with a ``uevent`` file below
``devices/`` is a device; its other files and directories belong to it, except the
directories of its child devices and *glue* directories, which hold only devices (the
``net/`` between ``virtio2`` and ``eth0``): those are made when a device is placed in them
and go when the last one leaves, as get_device_parent() and cleanup_glue_dir() do. A link
outside every device that points into one (``/sys/block/vda``) comes and goes with it.
"""

from __future__ import annotations

import errno
import posixpath
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..kernfs import (
    PAGE_SIZE,
    ErrnoError,
    FileOps,
    KernfsNode,
    OpenFile,
    kernfs_generic_poll,
    run_active,
)
from .bus import BusType
from .class_ import Class
from .control import add_hardware_controls
from .core import Device, device_add, device_unregister
from .driver import Driver, driver_register
from .hw import Hardware
from .platform import DEV_ATTR_DRIVER_OVERRIDE
from .sysfs import create_file

if TYPE_CHECKING:
    from .kernel import Kernel

DIR_MODE = 0o755
#: Classes and devices the engine keeps for itself: a recorded dump is transient anyway.
ENGINE_CLASSES = frozenset({"devcoredump"})
#: The uevent variables dev_uevent() prints before DRIVER= (drivers/base/core.c).
_BEFORE_DRIVER = frozenset({"MAJOR", "MINOR", "DEVNAME", "DEVMODE", "DEVUID", "DEVGID", "DEVTYPE"})


# -- what a recording holds --


@dataclass(frozen=True, slots=True)
class FileRecord:
    """A regular file: its mode, the size stat gave, and what reading it gave. ``content``
    is None for a file that was not read (write-only, or skipped); ``error`` is the errno a
    read(2) got, ``open_error`` the errno open(2) got."""

    mode: int
    size: int = PAGE_SIZE
    content: bytes | None = None
    error: int | None = None
    open_error: int | None = None


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """A symlink and its target, as readlink gave it."""

    target: str


Entry = FileRecord | LinkRecord


@dataclass(slots=True)
class DirRecord:
    """A directory: its mode and its files and links (its subdirectories have records of
    their own)."""

    mode: int = DIR_MODE
    entries: dict[str, Entry] = field(default_factory=dict)


@dataclass
class Recording:
    """A recorded ``/sys``: every directory by its path relative to ``/sys``."""

    dirs: dict[str, DirRecord]
    #: The device directories that exist only while their parent's driver is bound.
    driver_children: frozenset[str] = frozenset()

    def device_paths(self) -> Iterator[str]:
        """The directories that are devices: below ``devices/``, with a ``uevent`` file
        (except the dumps of the engine's own devcoredump class)."""
        for path, record in self.dirs.items():
            if (
                path.startswith("devices/")
                and isinstance(record.entries.get("uevent"), FileRecord)
                and not _engine_class_path(path)
            ):
                yield path


def resolve(directory: str, target: str) -> str | None:
    """Where a link in ``directory`` points, relative to /sys; None if outside it."""
    path = posixpath.normpath(posixpath.join(directory, target))
    return None if path.startswith("..") or path.startswith("/") else path


# -- the recording, indexed for replay --


@dataclass(eq=False)
class DeviceRecord:
    """One recorded device and what the driver core needs of it."""

    path: str
    parent: DeviceRecord | None
    bus: str | None = None
    cls: str | None = None
    driver: str | None = None
    devt: tuple[int, int] | None = None
    devtype: str | None = None
    #: Its uevent variables, without DRIVER=.
    env: list[tuple[str, str]] = field(default_factory=list)
    driver_child: bool = False
    children: list[DeviceRecord] = field(default_factory=list)
    #: Its own directories (``""`` is the device's) and the files and links in each that
    #: are not the driver core's own.
    static_dirs: list[tuple[str, int, dict[str, Entry]]] = field(default_factory=list)
    #: The recorded content of ``driver_override``, if the device has one.
    driver_override: str | None = None
    has_driver_override: bool = False
    #: Links elsewhere that point into this device: (directory, name, target).
    external_links: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def made_by_driver(self) -> list[DeviceRecord]:
        """The child devices its driver made."""
        return [child for child in self.children if child.driver_child]

    @property
    def enumerated(self) -> list[DeviceRecord]:
        """The child devices that exist whether or not it is bound."""
        return [child for child in self.children if not child.driver_child]


@dataclass
class DriverRecord:
    """One recorded driver: its bus, its name, its module (from its ``module`` link), whether
    it had ``bind`` and ``unbind`` files, and whether its devices had ``coredump``."""

    bus: str
    name: str
    module: str | None = None
    suppress_bind_attrs: bool = False
    has_coredump: bool = False


def _text(entry: Entry | None) -> str | None:
    if isinstance(entry, FileRecord) and entry.content is not None:
        return entry.content.decode("utf-8", "replace")
    return None


def parse_uevent(text: str) -> list[tuple[str, str]]:
    """The variables of a ``uevent`` file. A line without ``=`` continues the value before it:
    a value may end in a newline of its own (the MODALIAS of a CPU does), which shows as an
    empty line."""
    env: list[tuple[str, str]] = []
    for line in text.removesuffix("\n").split("\n") if text else []:
        key, eq, value = line.partition("=")
        if eq:
            env.append((key, value))
        elif env:
            env[-1] = (env[-1][0], f"{env[-1][1]}\n{line}")
    return env


def _parse_devt(text: str | None) -> tuple[int, int] | None:
    major, _, minor = (text or "").strip().partition(":")
    if major.isdigit() and minor.isdigit():
        return int(major), int(minor)
    return None


class RecordedMachine:
    """A recording taken apart the way the driver core sees it: the device tree, the buses,
    classes and drivers, and for every file and link whether the engine makes it or the
    recording does (and then, with which device it comes and goes)."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        dirs = recording.dirs
        self.devices: dict[str, DeviceRecord] = {}
        for path in sorted(recording.device_paths()):
            self.devices[path] = self._device(path)
        self.roots = [rec for rec in self.devices.values() if rec.parent is None]
        self.buses = sorted(
            {path.split("/")[1] for path in dirs if path.startswith("bus/")}
            | {rec.bus for rec in self.devices.values() if rec.bus}
        )
        self.classes = sorted(
            (
                {path.split("/")[1] for path in dirs if path.startswith("class/")}
                | {rec.cls for rec in self.devices.values() if rec.cls}
            )
            - ENGINE_CLASSES
        )
        #: What each bus's ``drivers_autoprobe`` showed.
        self.autoprobe = {
            bus: _text(dirs[f"bus/{bus}"].entries.get("drivers_autoprobe"))
            for bus in self.buses
            if f"bus/{bus}" in dirs
        }
        self.drivers = self._driver_records()
        self._glue = self._glue_dirs()
        #: Directories and entries that belong to no device, made once at boot.
        self.skeleton: list[tuple[str, int, dict[str, Entry]]] = []
        self._assign_entries()

    def _device(self, path: str) -> DeviceRecord:
        entries = self.recording.dirs[path].entries
        parent_path = posixpath.dirname(path)
        while parent_path and parent_path not in self.devices:
            parent_path = posixpath.dirname(parent_path)
        parent = self.devices.get(parent_path)
        rec = DeviceRecord(path, parent, driver_child=path in self.recording.driver_children)
        subsystem = entries.get("subsystem")
        if isinstance(subsystem, LinkRecord):
            where = resolve(path, subsystem.target) or ""
            kind, _, name = where.partition("/")
            if kind == "bus" and "/" not in name:
                rec.bus = name
            elif kind == "class" and "/" not in name:
                rec.cls = name
        driver = entries.get("driver")
        if isinstance(driver, LinkRecord):
            parts = (resolve(path, driver.target) or "").split("/")
            if len(parts) == 4 and parts[0] == "bus" and parts[2] == "drivers":
                rec.driver = parts[3]
        rec.devt = _parse_devt(_text(entries.get("dev")))
        rec.env = [
            kv for kv in parse_uevent(_text(entries.get("uevent")) or "") if kv[0] != "DRIVER"
        ]
        rec.devtype = dict(rec.env).get("DEVTYPE")
        override = _text(entries.get("driver_override"))
        if override is not None:
            rec.has_driver_override = True
            value = override.split("\n", 1)[0]
            rec.driver_override = None if value == "(null)" else value or None
        if parent is not None:
            parent.children.append(rec)
        return rec

    def _glue_dirs(self) -> set[str]:
        """The directories below ``devices/`` that hold nothing but devices (glue): made on
        demand when a device is placed in them."""
        dirs = self.recording.dirs
        subdirs: dict[str, list[str]] = {}
        for path in dirs:
            if path:
                subdirs.setdefault(posixpath.dirname(path), []).append(path)
        glue: set[str] = set()
        # Deepest first, so that a directory's subdirectories are decided before it.
        for path in sorted(dirs, key=lambda p: p.count("/"), reverse=True):
            if not path.startswith("devices/") or path in self.devices or dirs[path].entries:
                continue
            below = subdirs.get(path, [])
            if below and all(p in self.devices or p in glue for p in below):
                glue.add(path)
        return glue

    def owner(self, path: str) -> DeviceRecord | None:
        """The innermost device whose directory holds ``path`` (or is it)."""
        while path:
            rec = self.devices.get(path)
            if rec is not None:
                return rec
            path = posixpath.dirname(path)
        return None

    def _engine_made(self, directory: str, name: str, entry: Entry) -> bool:
        """Whether the driver core makes this entry itself: a device's own files, and the
        links to a device in its bus's, driver's and class's directories and in /sys/dev."""
        dev = self.devices.get(directory)
        if dev is not None:
            if name in ("uevent", "subsystem", "driver", "coredump", "driver_override"):
                return True
            if name == "dev":
                return dev.devt is not None
            # device_add_class_symlinks()
            return (
                name == "device"
                and dev.cls is not None
                and dev.parent is not None
                and (dev.devtype != "partition")
            )
        if not isinstance(entry, LinkRecord):
            return False
        target = self.devices.get(resolve(directory, entry.target) or "")
        if target is None:
            return False
        parts = directory.split("/")
        if directory in ("dev/char", "dev/block"):
            return target.devt is not None and name == f"{target.devt[0]}:{target.devt[1]}"
        if name != target.name:
            return False
        if len(parts) == 3 and parts[0] == "bus" and parts[2] == "devices":
            return target.bus == parts[1]
        if len(parts) == 4 and parts[0] == "bus" and parts[2] == "drivers":
            return target.bus == parts[1] and target.driver == parts[3]
        return len(parts) == 2 and parts[0] == "class" and target.cls == parts[1]

    def _assign_entries(self) -> None:
        """Give every recorded directory and entry to the device it comes with, to the
        skeleton made at boot, or to the engine."""
        for path in sorted(self.recording.dirs):
            record = self.recording.dirs[path]
            if path in self._glue or _engine_class_path(path):
                continue
            owner = self.owner(path) if path.startswith("devices/") else None
            entries: dict[str, Entry] = {}
            for name, entry in record.entries.items():
                if self._engine_made(path, name, entry):
                    continue
                if owner is None and isinstance(entry, LinkRecord):
                    target = self.owner(resolve(path, entry.target) or "")
                    if target is not None:
                        target.external_links.append((path, name, entry.target))
                        continue
                entries[name] = entry
            if owner is not None:
                relative = path[len(owner.path) + 1 :] if path != owner.path else ""
                owner.static_dirs.append((relative, record.mode, entries))
            else:
                self.skeleton.append((path, record.mode, entries))

    def _driver_records(self) -> list[DriverRecord]:
        drivers: dict[tuple[str, str], DriverRecord] = {}
        for path, record in self.recording.dirs.items():
            parts = path.split("/")
            if len(parts) == 4 and parts[0] == "bus" and parts[2] == "drivers":
                module = record.entries.get("module")
                drivers[(parts[1], parts[3])] = DriverRecord(
                    parts[1],
                    parts[3],
                    module=posixpath.basename(module.target)
                    if isinstance(module, LinkRecord)
                    else None,
                    suppress_bind_attrs="bind" not in record.entries,
                )
        for rec in self.devices.values():
            if rec.bus is not None and rec.driver is not None:
                drv = drivers.setdefault((rec.bus, rec.driver), DriverRecord(rec.bus, rec.driver))
                if "coredump" in self.recording.dirs[rec.path].entries:
                    drv.has_coredump = True
        return sorted(drivers.values(), key=lambda d: (d.bus, d.name))


def _engine_class_path(path: str) -> bool:
    """A path of a class the engine keeps for itself, or of its devices."""
    return any(
        path == f"{base}/{name}" or path.startswith(f"{base}/{name}/")
        for name in ENGINE_CLASSES
        for base in ("class", "devices/virtual")
    )


# -- the files of a recorded machine --


class RecordedFile(FileOps):
    """A file of the recorded machine, served from the recording with kernfs's rules: the
    mode is checked at open (``cat`` of a write-only file is EACCES), a read fails with the
    errno the recorder got, at most a page per read(2), and ENODEV once the file is
    removed; poll says POLLERR|POLLPRI until the first read, as kernfs_generic_poll() does. A
    write is kept: a text file then shows what was written last, a binary one (a size other
    than a page, such as PCI ``config``) is changed in place, within its size if it has one.
    A file the recording has no contents for reads as EIO."""

    __slots__ = ("content", "record")
    extra_open_perm_check = True

    def __init__(self, record: FileRecord) -> None:
        self.record = record
        self.content = record.content

    async def open(self, of: OpenFile) -> None:
        if self.record.open_error is not None:
            raise ErrnoError(self.record.open_error)

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        def serve() -> bytes:
            if self.record.error is not None:
                raise ErrnoError(self.record.error)
            if self.content is None:
                raise ErrnoError(errno.EIO)
            of.event = of.node.event
            return self.content[offset : offset + min(size, PAGE_SIZE)]

        return run_active(of.node, serve)

    def poll(self, of: OpenFile) -> int:
        return kernfs_generic_poll(of)

    async def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        data = data[:PAGE_SIZE]
        if not data:
            return 0

        def store() -> int:
            size = of.node.size
            if size == PAGE_SIZE:
                self.content = data
                return len(data)
            # sysfs_kf_bin_write(): within the size, if the attribute has one
            if size and offset >= size:
                raise ErrnoError(errno.EFBIG)
            chunk = data[: size - offset] if size else data
            old = (self.content or b"").ljust(offset, b"\0")
            self.content = old[:offset] + chunk + old[offset + len(chunk) :]
            return len(chunk)

        return run_active(of.node, store)


def create_entries(kernel: Kernel, directory: KernfsNode, entries: Mapping[str, Entry]) -> None:
    """The recorded files and links of one directory; names the engine made already (a
    built-in bus's ``rescan``, a driver's ``bind``) are left to it."""
    root = kernel.kernfs
    for name, entry in entries.items():
        if name in directory.children:
            continue
        if isinstance(entry, LinkRecord):
            root.create_link(directory, name, entry.target)
        else:
            root.create_file(directory, name, entry.mode, RecordedFile(entry), entry.size)


def make_dirs(kernel: Kernel, path: str, mode: int = DIR_MODE) -> KernfsNode:
    """``path`` (below the mount's root), with the directories on the way to it."""
    node = kernel.kernfs.root
    parts = path.split("/")
    for i, part in enumerate(parts):
        child = node.lookup(part)
        last = i == len(parts) - 1
        node = child or kernel.kernfs.create_dir(node, part, mode if last else DIR_MODE)
    return node


# -- recorded devices --


class RecordedDevice(Device):
    """A device of the recorded machine. Its files are the recording's, placed where the
    recording shows its directory; it matches only the driver it was bound to (or the one
    the scenario gives it)."""

    devtmpfs_node = False

    def __init__(self, machine: ReplayedMachine, record: DeviceRecord, parent: Device | None):
        kernel = machine.kernel
        super().__init__(
            kernel,
            record.name,
            bus=kernel.buses[record.bus] if record.bus else None,
            cls=kernel.classes[record.cls] if record.cls else None,
            parent=parent,
            devt=record.devt,
            devtype=record.devtype,
        )
        self.machine = machine
        self.record = record
        self.driver_name = machine.bindings.get(record.path, record.driver)
        self.driver_override = record.driver_override
        self.hw = machine.hardware.get(record.path, self.hw)
        #: The child devices present that its bus enumerated, and those its driver made.
        self.enumerated: list[RecordedDevice] = []
        self.made_by_driver: list[RecordedDevice] = []

    def get_device_parent(self) -> KernfsNode:
        return make_dirs(self.kernel, "sys/" + posixpath.dirname(self.record.path))

    def add_files(self) -> None:
        assert self.kn is not None
        kernel = self.kernel
        for relative, mode, entries in self.record.static_dirs:
            directory = self.kn
            if relative:
                directory = make_dirs(kernel, f"{self.kn.path().lstrip('/')}/{relative}", mode)
            create_entries(kernel, directory, entries)
        if self.record.has_driver_override:
            create_file(kernel.kernfs, self.kn, self, DEV_ATTR_DRIVER_OVERRIDE)

    def matches(self, drv: Driver) -> bool:
        return drv.name == self.driver_name

    def uevent_env(self) -> list[tuple[str, str]]:
        env = list(self.record.env)
        if self.driver is not None:
            at = 0
            for i, (key, _) in enumerate(env):
                if key in _BEFORE_DRIVER:
                    at = i + 1
            env.insert(at, ("DRIVER", self.driver.name))
        return env


async def register_recorded_device(
    machine: ReplayedMachine, record: DeviceRecord, parent: RecordedDevice | None
) -> RecordedDevice:
    """Add a recorded device (probed as it is added, so its driver makes its children),
    the links elsewhere that point into it, and then the child devices its bus found."""
    dev = RecordedDevice(machine, record, parent)
    await device_add(dev)
    machine.present[record.path] = dev
    machine.add_external_links(record)
    for child in record.enumerated:
        dev.enumerated.append(await register_recorded_device(machine, child, dev))
    return dev


async def unregister_recorded_device(dev: RecordedDevice) -> None:
    """Take a recorded device away as its bus would: its enumerated children first, then the
    links to it, then the device (whose driver, unbinding, takes away what it made)."""
    while dev.enumerated:
        await unregister_recorded_device(dev.enumerated.pop())
    await dev.machine.remove_external_links(dev.record)
    del dev.machine.present[dev.record.path]
    await device_unregister(dev)


# -- the machine --


DriverFactory = Callable[[BusType, DriverRecord], Driver]


class ReplayedMachine:
    """A recording booted in a kernel: the recorded devices present now, by path."""

    def __init__(
        self, kernel: Kernel, recorded: RecordedMachine, bindings: Mapping[str, str | None]
    ) -> None:
        self.kernel = kernel
        self.recorded = recorded
        #: Recorded device path -> the driver a scenario gives it (None: leave it unbound).
        self.bindings = dict(bindings)
        self.present: dict[str, RecordedDevice] = {}
        #: The simulated hardware of the devices a scenario gives a driver of its own: their
        #: interrupt line and receive path, with their files in the control plane.
        self.hardware: dict[str, Hardware] = {}
        for path, driver in self.bindings.items():
            if driver is not None:
                hw = self.hardware[path] = Hardware()
                add_hardware_controls(kernel, posixpath.basename(path), hw)

    def add_external_links(self, record: DeviceRecord) -> None:
        for directory, name, target in record.external_links:
            node = self.kernel.lookup("sys/" + directory)
            if node is not None and node.lookup(name) is None:
                self.kernel.kernfs.create_link(node, name, target)

    async def remove_external_links(self, record: DeviceRecord) -> None:
        for directory, name, _ in record.external_links:
            node = self.kernel.lookup(f"sys/{directory}/{name}")
            if node is not None:
                await self.kernel.kernfs.remove(node)


async def replay(
    kernel: Kernel,
    recording: Recording,
    make_driver: DriverFactory,
    bindings: Mapping[str, str | None] | None = None,
) -> ReplayedMachine:
    """Build the recorded machine in ``kernel`` (booted without the built-in root devices):
    buses and classes, the drivers (made by ``make_driver``), the files that belong to no
    device, then the devices from the roots down, each probed as it is added. Each bus's
    ``drivers_autoprobe`` is set as recorded at the end."""
    recorded = RecordedMachine(recording)
    machine = ReplayedMachine(kernel, recorded, bindings or {})
    for name in recorded.buses:
        if name not in kernel.buses:
            BusType(kernel, name).register()
    for name in recorded.classes:
        if name not in kernel.classes:
            Class(kernel, name).register()
    for drv in recorded.drivers:
        await driver_register(make_driver(kernel.buses[drv.bus], drv))
    for path, mode, entries in recorded.skeleton:
        create_entries(kernel, make_dirs(kernel, "sys/" + path, mode), entries)
    for record in recorded.roots:
        await register_recorded_device(machine, record, None)
    for name, shown in recorded.autoprobe.items():
        if shown is not None:
            kernel.buses[name].drivers_autoprobe = shown[:1] != "0"
    return machine
