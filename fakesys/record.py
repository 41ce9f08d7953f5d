"""``fakesys record``: a machine's ``/sys`` as a scenario, and the file format of recordings.

``fakesys record [-o FILE] [DEVPATH ...]`` reads ``block/``, ``bus/``, ``class/``, ``dev/``,
``devices/`` and ``module/`` of the real ``/sys``: all of them, or for each DEVPATH (a device
directory, or a link to one such as ``/sys/class/drm/card0``) its subtree, the devices above
it, and what belongs to all those devices: their bus's and class's directories (with the
links to the recorded devices only), their drivers' directories, their drivers' modules, and
their links in ``/sys/dev`` and ``/sys/block``. Symlinks are never followed; each is recorded
as its target. Every file is opened and read once, with O_NONBLOCK, except those whose read
has effects (:data:`SKIPPED`) and those no one may read.

What a recording cannot hold: files outside those six directories (``/sys/kernel``,
``/sys/firmware``, ``/sys/fs``, ``/sys/power``); contents bigger than :data:`MAX_CONTENT`;
anything that changes on its own (counters and times are as they were when read); what the
drivers do (see :mod:`fakesys.kernel.replay`), and which errno a write would get.

The format: a recording is a scenario (TOML), so ``fakesys mount --scenario FILE`` mounts it
and a scenario can ``include`` it. A recording is big (a small virtual machine has about ten
thousand entries), so the format is meant to be read and diffed: one table per directory, in
path order, and one line per file or link, sorted by name::

    [recording]
    format = 1
    kernel = "6.18.0"                   # uname -r of the recorded machine
    machine = "x86_64"
    paths = ["/sys"]                    # what was recorded
    driver_children = ["devices/pci0000:00/0000:00:03.0/virtio2", ...]

    [sys."devices/pci0000:00/0000:00:03.0"]
    config = { mode = 0o644, size = 256, hex = "f41a4110..." }   # bytes that are not text
    driver = { link = "../../../bus/pci/drivers/virtio-pci" }
    remove = { mode = 0o220 }                                    # not read: write-only
    vendor = { mode = 0o444, text = "0x1af4\n" }                 # size 4096 unless given
    [sys."devices/pci0000:00/0000:00:03.0/power"]
    autosuspend_delay_ms = { mode = 0o644, error = "EIO" }       # read(2) failed so

Contents that are UTF-8 text without control characters (tabs and newlines aside) are
``text``, anything else ``hex``: lossless either way, and a changed byte of a binary file is a
change at the same place of its line. ``open_error`` is an errno open(2) got. A directory
whose mode is not 0755 has ``"." = { mode = ... }``. ``driver_children`` lists the devices that
exist only while their parent's driver is bound, which unbinding removes; the recorder guesses
them (:func:`guess_driver_children`) and the list may be edited.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat
import sys
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .kernel.replay import (
    DIR_MODE,
    DirRecord,
    Entry,
    FileRecord,
    LinkRecord,
    RecordedMachine,
    Recording,
    resolve,
)
from .kernfs import PAGE_SIZE

FORMAT = 1
ROOTS = ("block", "bus", "class", "dev", "devices", "module")
#: The most bytes of one file a recording keeps; a bigger file is recorded unread.
MAX_CONTENT = 1 << 20
#: Files whose read does something besides reading, by pattern on the path below /sys.
SKIPPED = (
    # Reading hot_add adds a zram device (drivers/block/zram/zram_drv.c).
    re.compile(r"^class/zram-control/hot_add$"),
    # A PCI BAR's file reads the device's registers (pci_read_resource_io()).
    re.compile(r"^devices/.*/resource\d+(_wc)?$"),
)
#: Classes whose devices a bus's enumeration makes, not the driver of their parent.
ENUMERATED_CLASSES = frozenset({"pci_bus"})
#: Buses on which a driver makes its own children on the same bus: a USB hub's devices and a
#: USB device's interfaces; a platform device's cells (MFD) or populated nodes.
SAME_BUS_CHILDREN = frozenset({"usb", "platform"})


class RecordingError(Exception):
    """A recording or a path to record that cannot be used; the message is for the user."""


# -- reading /sys --


def read_file(path: str, relative: str, st: os.stat_result) -> FileRecord:
    """One file: opened and read to the end once, unless no one may read it or reading it
    has effects."""
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o444 or any(p.match(relative) for p in SKIPPED):
        return FileRecord(mode, st.st_size)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        return FileRecord(mode, st.st_size, open_error=e.errno)
    chunks: list[bytes] = []
    length = 0
    try:
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            length += len(chunk)
            if length > MAX_CONTENT:
                return FileRecord(mode, st.st_size)
    except OSError as e:
        return FileRecord(mode, st.st_size, error=e.errno)
    finally:
        os.close(fd)
    return FileRecord(mode, st.st_size, b"".join(chunks))


@dataclass
class Recorder:
    """Reads directories of a sysfs tree (``sysfs``, /sys by default) into a recording."""

    sysfs: str = "/sys"
    dirs: dict[str, DirRecord] = field(default_factory=dict)

    def read_dir(
        self, relative: str, keep: Callable[[str, os.DirEntry[str]], bool] = lambda r, e: True
    ) -> list[str]:
        """Record one directory's files and the links ``keep`` accepts; return its
        subdirectories (their paths below /sys). Nothing is followed."""
        path = posixpath.join(self.sysfs, relative)
        st = os.lstat(path)
        record = self.dirs.setdefault(relative, DirRecord(stat.S_IMODE(st.st_mode)))
        subdirs = []
        with os.scandir(path) as it:
            for entry in sorted(it, key=lambda e: e.name):
                child = f"{relative}/{entry.name}"
                try:
                    if entry.is_symlink():
                        if keep(relative, entry):
                            record.entries[entry.name] = LinkRecord(os.readlink(entry.path))
                    elif entry.is_dir(follow_symlinks=False):
                        subdirs.append(child)
                    else:
                        info = entry.stat(follow_symlinks=False)
                        record.entries[entry.name] = read_file(entry.path, child, info)
                except FileNotFoundError:  # gone while we looked: it was never there
                    continue
        return subdirs

    def read_tree(self, relative: str) -> None:
        for subdir in self.read_dir(relative):
            self.read_tree(subdir)

    def is_device(self, relative: str) -> bool:
        return relative.startswith("devices/") and os.path.isfile(
            posixpath.join(self.sysfs, relative, "uevent")
        )

    def read_device_dir(self, relative: str) -> None:
        """A device's own directory: its files and links and its subdirectories, but not
        its child devices, nor directories that held only those (glue)."""
        for subdir in self.read_dir(relative):
            if not self.is_device(subdir):
                self._read_owned(subdir)

    def _read_owned(self, relative: str) -> bool:
        subdirs = self.read_dir(relative)
        kept = [s for s in subdirs if not self.is_device(s) and self._read_owned(s)]
        if self.dirs[relative].entries or kept or not subdirs:
            return True
        del self.dirs[relative]
        return False

    def read_selected(self, paths: Iterable[str]) -> None:
        """The subtrees of ``paths`` (below /sys), the directories above them, and what
        belongs to every device recorded."""
        trees = list(paths)
        for relative in trees:
            self.read_tree(relative)
        for relative in trees:
            parts = relative.split("/")
            for depth in range(1, len(parts)):
                above = "/".join(parts[:depth])
                if any(above == t or above.startswith(t + "/") for t in trees):
                    break  # recorded whole already, with another path
                if self.is_device(above):
                    self.read_device_dir(above)
                elif above not in self.dirs:
                    self.read_dir(above, keep=lambda r, e: False)
        self._read_belongings()

    def _read_belongings(self) -> None:
        devices = {p for p in self.dirs if self.is_device(p)}

        def to_recorded(directory: str, entry: os.DirEntry[str]) -> bool:
            target = resolve(directory, os.readlink(entry.path))
            return target in devices

        drivers: set[str] = set()
        subsystems: set[str] = set()
        for path in sorted(devices):
            entries = self.dirs[path].entries
            for name, into in (("subsystem", subsystems), ("driver", drivers)):
                link = entries.get(name)
                where = resolve(path, link.target) if isinstance(link, LinkRecord) else None
                if where is not None and os.path.isdir(posixpath.join(self.sysfs, where)):
                    into.add(where)
        for where in sorted(subsystems):
            for subdir in self.read_dir(where, keep=to_recorded):
                if where.startswith("bus/") and subdir.endswith(("/devices", "/drivers")):
                    self.read_dir(subdir, keep=to_recorded)
                else:
                    self.read_tree(subdir)
        modules = set()
        for where in sorted(drivers):
            self.read_dir(where, keep=lambda r, e: e.name == "module" or to_recorded(r, e))
            modules.add(self._module_of(where))
        for module_dir in sorted(m for m in modules if m is not None):
            self.read_tree(module_dir)
        for where in ("block", "dev", "dev/char", "dev/block"):
            if os.path.isdir(posixpath.join(self.sysfs, where)):
                self.read_dir(where, keep=to_recorded)

    def _module_of(self, driver_dir: str) -> str | None:
        """A driver's module: its ``module`` link, or for a built-in driver (which has
        none) the module of its name if ``/sys/module`` has one (virtio-pci in virtio_pci)."""
        module = self.dirs[driver_dir].entries.get("module")
        if isinstance(module, LinkRecord):
            return resolve(driver_dir, module.target)
        by_name = "module/" + posixpath.basename(driver_dir).replace("-", "_")
        return by_name if os.path.isdir(posixpath.join(self.sysfs, by_name)) else None


def device_path(sysfs: str, path: str) -> str:
    """A path to record, as a directory below ``devices/`` (links such as a class device's
    are followed)."""
    real = os.path.realpath(path)
    base = os.path.realpath(sysfs)
    relative = os.path.relpath(real, base)
    if not relative.startswith("devices/") or not os.path.isdir(real):
        raise RecordingError(f"{path}: not a directory below {sysfs}/devices")
    return relative


def record(paths: Sequence[str] = (), sysfs: str = "/sys") -> Recording:
    """Record the whole machine, or the devices at ``paths`` with what belongs to them."""
    recorder = Recorder(sysfs)
    if paths:
        recorder.read_selected(device_path(sysfs, p) for p in paths)
    else:
        for root in ROOTS:
            if os.path.isdir(posixpath.join(sysfs, root)):
                recorder.read_tree(root)
    recording = Recording(dict(sorted(recorder.dirs.items())))
    recording.driver_children = guess_driver_children(recording)
    return recording


def guess_driver_children(recording: Recording) -> frozenset[str]:
    """The devices that exist only while their parent is bound, as far as the tree tells:
    a bound device's children of another subsystem (class devices, devices on another bus)
    are its driver's, except the classes a bus enumeration makes; children on the same bus
    are its driver's on the buses of :data:`SAME_BUS_CHILDREN`; children of no subsystem
    (a CPU's ``cache``) are the core's."""
    machine = RecordedMachine(recording)
    made = set()
    for rec in machine.devices.values():
        parent = rec.parent
        if parent is None or parent.driver is None or (rec.bus is None and rec.cls is None):
            continue
        if rec.cls is not None:
            owned = rec.cls not in ENUMERATED_CLASSES
        else:
            owned = rec.bus != parent.bus or rec.bus in SAME_BUS_CHILDREN
        if owned:
            made.add(rec.path)
    return frozenset(made)


# -- the file format --


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
    '"': '\\"',
    "\\": "\\\\",
}
_CONTROL = re.compile(r'[\x00-\x1f\x7f"\\]')


def toml_string(text: str) -> str:
    """A TOML basic string."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return _ESCAPES.get(char) or f"\\u{ord(char):04x}"

    return '"' + _CONTROL.sub(escape, text) + '"'


def toml_key(name: str) -> str:
    return name if _BARE_KEY.match(name) else toml_string(name)


def _as_text(content: bytes) -> str | None:
    """The contents as text, if they are UTF-8 with no control characters but tabs and
    newlines."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text):
        return None
    return text


def _entry_line(entry: Entry) -> str:
    if isinstance(entry, LinkRecord):
        return f"{{ link = {toml_string(entry.target)} }}"
    fields = [f"mode = 0o{entry.mode:o}"]
    if entry.size != PAGE_SIZE:
        fields.append(f"size = {entry.size}")
    if entry.open_error is not None:
        fields.append(f'open_error = "{errno.errorcode[entry.open_error]}"')
    if entry.error is not None:
        fields.append(f'error = "{errno.errorcode[entry.error]}"')
    if entry.content is not None:
        text = _as_text(entry.content)
        if text is not None:
            fields.append(f"text = {toml_string(text)}")
        else:
            fields.append(f'hex = "{entry.content.hex()}"')
    return "{ " + ", ".join(fields) + " }"


def dumps(recording: Recording, paths: Sequence[str] = ()) -> str:
    """The recording as a scenario file."""
    uname = os.uname()
    lines = [
        f"# A recording of /sys made by `fakesys record` on Linux {uname.release} {uname.machine}.",
        "# Mount it with `fakesys mount --scenario FILE`; a scenario can `include` it.",
        "",
        "[recording]",
        f"format = {FORMAT}",
        f"kernel = {toml_string(uname.release)}",
        f"machine = {toml_string(uname.machine)}",
        "paths = [" + ", ".join(toml_string(p) for p in paths or ["/sys"]) + "]",
        "# The devices that exist only while their parent's driver is bound.",
        "driver_children = [",
        *(f"    {toml_string(p)}," for p in sorted(recording.driver_children)),
        "]",
    ]
    for path, record in recording.dirs.items():
        lines.append("")
        lines.append(f"[sys.{toml_string(path)}]")
        if record.mode != DIR_MODE:
            lines.append(f'"." = {{ mode = 0o{record.mode:o} }}')
        for name, entry in record.entries.items():
            lines.append(f"{toml_key(name)} = {_entry_line(entry)}")
    return "\n".join(lines) + "\n"


class _Table:
    """Reads one table of a recording, failing with its place in the file."""

    def __init__(self, source: str, where: str, table: object) -> None:
        self.source, self.where = source, where
        if not isinstance(table, dict):
            self.fail("a table")
        self.table: dict[str, Any] = table

    def fail(self, expected: str, key: str | None = None) -> NoReturn:
        at = f"{self.where}.{toml_key(key)}" if key is not None else self.where
        raise RecordingError(f"{self.source}: {at}: expected {expected}")


_ENTRY = "a file ({ mode = 0o444, text = ... }) or a link ({ link = ... })"


def _errno(table: _Table, key: str, value: object) -> int:
    code = getattr(errno, value, None) if isinstance(value, str) else None
    if not isinstance(code, int) or not str(value).startswith("E"):
        table.fail('an errno name such as "EIO"', key)
    return code


def _load_entry(table: _Table, name: str, value: object) -> Entry:
    if not isinstance(value, dict):
        table.fail(_ENTRY, name)
    if "link" in value:
        if set(value) != {"link"} or not isinstance(value["link"], str):
            table.fail(_ENTRY, name)
        return LinkRecord(value["link"])
    fields = {"mode", "size", "text", "hex", "error", "open_error"}
    mode, size = value.get("mode"), value.get("size", PAGE_SIZE)
    if (
        not set(value) <= fields
        or not isinstance(mode, int)
        or not 0 <= mode <= 0o7777
        or not isinstance(size, int)
        or size < 0
        or ("text" in value and "hex" in value)
    ):
        table.fail(_ENTRY, name)
    content: bytes | None = None
    if "text" in value:
        if not isinstance(value["text"], str):
            table.fail(_ENTRY, name)
        content = value["text"].encode()
    elif "hex" in value:
        try:
            content = bytes.fromhex(value["hex"])
        except (TypeError, ValueError):
            table.fail("hex digits", name)
    error = _errno(table, name, value["error"]) if "error" in value else None
    open_error = _errno(table, name, value["open_error"]) if "open_error" in value else None
    return FileRecord(mode, size, content, error, open_error)


def loads(data: dict[str, Any], source: str) -> Recording:
    """The recording in a parsed scenario file (its ``[recording]`` and ``[sys.*]``
    tables); raises :class:`RecordingError` on the first problem."""
    meta = _Table(source, "recording", data.get("recording"))
    if meta.table.get("format") != FORMAT:
        meta.fail(f"format = {FORMAT}", "format")
    children = meta.table.get("driver_children", [])
    if not isinstance(children, list) or not all(isinstance(p, str) for p in children):
        meta.fail("an array of device paths", "driver_children")
    tables = _Table(source, "sys", data.get("sys", {}))
    dirs: dict[str, DirRecord] = {}
    for path in sorted(tables.table):
        table = _Table(source, f"sys.{toml_string(path)}", tables.table[path])
        if path.startswith("/") or ".." in path.split("/") or not path:
            table.fail('a path relative to /sys, such as "devices/platform"')
        record = DirRecord()
        for name, value in table.table.items():
            if name == ".":
                mode = value.get("mode") if isinstance(value, dict) else None
                if not isinstance(mode, int) or set(value) != {"mode"}:
                    table.fail("{ mode = 0o755 }", name)
                record.mode = mode
            elif "/" in name or name == "..":
                table.fail("a file name", name)
            else:
                record.entries[name] = _load_entry(table, name, value)
        dirs[path] = record
    unknown = sorted(set(children) - set(dirs))
    if unknown:
        meta.fail(f"recorded device paths (no directory '{unknown[0]}')", "driver_children")
    return Recording(dirs, frozenset(children))


def load(path: str) -> Recording:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise RecordingError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise RecordingError(f"{path}: not valid TOML: {e}") from None
    return loads(data, path)


def main(output: str | None, paths: Sequence[str], sysfs: str) -> int:
    """``fakesys record``: write the recording to ``output`` (stdout if None)."""
    try:
        recording = record(paths, sysfs)
    except RecordingError as e:
        print(f"fakesys record: {e}", file=sys.stderr)
        return 2
    text = dumps(recording, paths)
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        print(f"fakesys record: {output}: {e.strerror}", file=sys.stderr)
        return 1
    return 0
