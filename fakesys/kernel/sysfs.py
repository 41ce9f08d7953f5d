"""Attributes of driver-model objects, as DEVICE_ATTR / DRIVER_ATTR / BUS_ATTR declare them.

An attribute binds a show and a store to the object they act on; :func:`create_file` puts it in
a directory, wrapping the callbacks in the system-call frames that lead to them, so a report
raised inside a store shows ``vfs_write`` → ``kernfs_fop_write_iter`` → ``<name>_store``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from ..kernfs import PAGE_SIZE, BinAttribute, ErrnoError, KernfsNode, KernfsRoot, TextAttribute
from .lockdep import OF_MUTEX, SB_WRITERS, SB_WRITERS_ADDR, held, open_file_addr
from .slab import Embedded
from .stacktrace import SYSCALL_READ, SYSCALL_WRITE, Frames, enter, frames

if TYPE_CHECKING:
    from .core import Device

T = TypeVar("T")

# Mode helpers (include/linux/sysfs.h)
RO = 0o444
WO = 0o200
RW = 0o644


@dataclass(frozen=True)
class SysfsAttr(Generic[T]):
    """A text attribute of objects of type ``T``."""

    name: str
    mode: int
    show: Callable[[T], str] | None = None
    store: Callable[[T, bytes], Awaitable[int]] | None = None


@dataclass(frozen=True)
class SysfsBinAttr(Generic[T]):
    """A binary attribute of objects of type ``T``; ``size`` is what stat reports."""

    name: str
    mode: int
    read: Callable[[T, int, int], Awaitable[bytes]] | None = None
    write: Callable[[T, int, bytes], Awaitable[int]] | None = None
    size: Callable[[T], int] | int = 0


@contextlib.contextmanager
def _write_locks(name: str) -> Iterator[None]:
    """What a write(2) to a sysfs file holds around the store: the superblock's freeze
    protection (file_start_write() in vfs_write()) and the open file's mutex
    (kernfs_fop_write_iter()). Listed in lockdep reports; see :mod:`.lockdep`."""
    with (
        held(SB_WRITERS, SB_WRITERS_ADDR, "ksys_write"),
        held(OF_MUTEX, open_file_addr(name), "kernfs_fop_write_iter"),
    ):
        yield


# The sysfs_ops of each kind of kobject (drv_attr_store() in drivers/base/bus.c, ...), between
# sysfs_kf_write() and the attribute's own store, by the class of the object.
_SYSFS_OPS = {
    "Device": "dev_attr",
    "Driver": "drv_attr",
    "BusType": "bus_attr",
    "Class": "class_attr",
    "Module": "module_attr",
}


@functools.cache
def _sysfs_ops(cls: type) -> str | None:
    return next((_SYSFS_OPS[c.__name__] for c in cls.__mro__ if c.__name__ in _SYSFS_OPS), None)


@functools.cache
def _show_frames(ops: str | None, name: str | None) -> Frames:
    """The frames of a show, shared by every file of that attribute and kind of object;
    ``name`` None when the show pushes its own frame."""
    return SYSCALL_READ + frames(
        "seq_read_iter",
        "kernfs_seq_show",
        "sysfs_kf_seq_show",
        *([f"{ops}_show"] if ops else []),
        *([f"{name}_show"] if name else []),
    )


@functools.cache
def _store_frames(ops: str | None, name: str | None) -> Frames:
    return SYSCALL_WRITE + frames(
        "kernfs_fop_write_iter",
        "sysfs_kf_write",
        *([f"{ops}_store"] if ops else []),
        *([f"{name}_store"] if name else []),
    )


class SysfsFile(TextAttribute, Generic[T]):
    """The file of one attribute of one object: ``show(obj)`` under the frames of a read,
    ``store(obj, buf)`` under the frames and locks of a write. One small object per file, not
    a closure per callback: a big machine has hundreds of thousands of attribute files."""

    __slots__ = ("attr", "obj")
    #: The show and store push their own frames (a driver's, called through :mod:`.calls`)
    #: instead of ``<name>_show``/``<name>_store``.
    own_frames = False

    def __init__(self, obj: T, attr: SysfsAttr[T]) -> None:
        self.obj, self.attr = obj, attr

    @property
    def _frames(self) -> tuple[str | None, str | None]:
        ops = _sysfs_ops(type(self.obj))  # type: ignore[arg-type]  # a type is hashable
        return ops, None if self.own_frames else self.attr.name

    @property
    def can_read(self) -> bool:
        return self.attr.show is not None

    @property
    def can_write(self) -> bool:
        return self.attr.store is not None

    @property
    def show_name(self) -> str:
        return _show_frames(*self._frames)[-1][0]

    def show(self) -> str:
        show = self.attr.show
        if show is None:
            raise ErrnoError(errno.EIO)
        with enter(_show_frames(*self._frames)):
            return show(self.obj)

    async def store(self, data: bytes) -> int:
        store = self.attr.store
        if store is None:
            raise ErrnoError(errno.EIO)
        with enter(_store_frames(*self._frames)), _write_locks(self.attr.name):
            return await store(self.obj, data)


class _DriverSysfsFile(SysfsFile[T]):
    __slots__ = ()
    own_frames = True


def create_file(
    root: KernfsRoot, parent: KernfsNode, obj: T, attr: SysfsAttr[T], *, own_frames: bool = False
) -> KernfsNode:
    """The attribute's file; ``own_frames`` when its show and store push their own frames
    (a driver's, called through :mod:`.calls`) instead of ``<name>_show``/``<name>_store``."""
    file = (_DriverSysfsFile if own_frames else SysfsFile)(obj, attr)
    return root.create_file(parent, attr.name, attr.mode, file, size=PAGE_SIZE)


def create_bin_file(
    root: KernfsRoot, parent: KernfsNode, obj: T, attr: SysfsBinAttr[T]
) -> KernfsNode:
    read_fn, write_fn = attr.read, attr.write
    read: Callable[[int, int], Awaitable[bytes]] | None = None
    write: Callable[[int, bytes], Awaitable[int]] | None = None
    if read_fn is not None:
        read_frames = SYSCALL_READ + frames("kernfs_file_read_iter", "sysfs_kf_bin_read")

        async def read(offset: int, count: int) -> bytes:
            with enter(read_frames):
                return await read_fn(obj, offset, count)

    if write_fn is not None:
        write_frames = SYSCALL_WRITE + frames("kernfs_fop_write_iter", "sysfs_kf_bin_write")

        async def write(offset: int, data: bytes) -> int:
            with enter(write_frames), _write_locks(attr.name):
                return await write_fn(obj, offset, data)

    size = attr.size(obj) if callable(attr.size) else attr.size
    return root.create_file(parent, attr.name, attr.mode, BinAttribute(read, write, size), size)


def create_group(
    root: KernfsRoot, parent: KernfsNode, obj: T, attrs: Iterable[SysfsAttr[T]]
) -> None:
    for attr in attrs:
        create_file(root, parent, obj, attr)


# -- attributes of a driver's own (DEVICE_ATTR_RO() and device_create_file()) --


class DeviceAttribute(Embedded):
    """``struct device_attribute``: ``show(dev, attr) -> str`` (it cannot sleep) and ``async
    store(dev, attr, buf) -> int``, either None. Made whole (``DEVICE_ATTR_RO()``), or
    embedded in a driver's struct and filled in at probe, as dynamic attributes are; a show
    then finds its struct with container_of(attr)."""

    C_SIZE = 48

    def __init__(
        self,
        name: str = "",
        mode: int = 0,
        show: Callable[[Device, DeviceAttribute], str] | None = None,
        store: Callable[[Device, DeviceAttribute, bytes], Awaitable[int]] | None = None,
    ) -> None:
        self.name = name
        self.mode = mode
        self.show = show
        self.store = store


def sysfs_attr_init(attr: DeviceAttribute) -> None:
    """sysfs_attr_init(): lockdep's key for a dynamic attribute; nothing else to do."""
    attr.touch(0, 8, write=True)


def device_create_file(dev: Device, attr: DeviceAttribute) -> None:
    """device_create_file(): the driver's show and store run as its own functions (their
    frames and module in reports), under ``dev_attr_show``/``dev_attr_store``. EEXIST (with
    the kernel's warning) if the device already has a file of that name."""
    from .calls import call, call_atomic  # noqa: PLC0415 (calls imports the loader)

    kernel = dev.kernel
    show, store = attr.show, attr.store
    assert dev.kn is not None
    sysfs_attr = SysfsAttr["Device"](
        attr.name,
        attr.mode,
        None if show is None else lambda d: call_atomic(kernel, show, d, attr),
        None if store is None else lambda d, buf: call(kernel, store, d, attr, buf),
    )
    create_file(kernel.kernfs, dev.kn, dev, sysfs_attr, own_frames=True)


async def device_remove_file(dev: Device, attr: DeviceAttribute) -> None:
    """device_remove_file(): waits for shows and stores in flight (kernfs_drain())."""
    kn = dev.kn.lookup(attr.name) if dev.kn is not None else None
    if kn is not None:
        await dev.kernel.kernfs.remove(kn)
