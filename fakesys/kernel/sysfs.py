"""Attributes of driver-model objects, as DEVICE_ATTR / DRIVER_ATTR / BUS_ATTR declare them.

An attribute binds a show and a store to the object they act on; :func:`create_file` puts it in
a directory, wrapping the callbacks in the system-call frames that lead to them, so a report
raised inside a store shows ``vfs_write`` → ``kernfs_fop_write_iter`` → ``<name>_store``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..kernfs import PAGE_SIZE, Attribute, BinAttribute, KernfsNode, KernfsRoot
from .stacktrace import SYSCALL_READ, SYSCALL_WRITE, Frames, enter, frames

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


@functools.cache
def _call_frames(syscall: Frames, *names: str) -> Frames:
    """The frames of a callback, shared by every file of that attribute."""
    return syscall + frames(*names)


class _Show(Generic[T]):
    """``show(obj)`` under the frames of a read: a closure would do, in four times the memory
    (a big machine has a hundred thousand attributes)."""

    __slots__ = ("__name__", "frames", "obj", "show")

    def __init__(self, obj: T, show: Callable[[T], str], name: str) -> None:
        self.obj, self.show = obj, show
        self.frames = _call_frames(SYSCALL_READ, "seq_read_iter", "kernfs_seq_show", name)
        self.__name__ = name

    def __call__(self) -> str:
        with enter(self.frames):
            return self.show(self.obj)


class _Store(Generic[T]):
    """``store(obj, buf)`` under the frames of a write."""

    __slots__ = ("frames", "obj", "store")

    def __init__(self, obj: T, store: Callable[[T, bytes], Awaitable[int]], name: str) -> None:
        self.obj, self.store = obj, store
        self.frames = _call_frames(SYSCALL_WRITE, "kernfs_fop_write_iter", name)

    async def __call__(self, buf: bytes) -> int:
        with enter(self.frames):
            return await self.store(self.obj, buf)


@functools.cache
def _callback_name(attr: str, kind: str) -> str:
    return f"{attr}_{kind}"


def create_file(root: KernfsRoot, parent: KernfsNode, obj: T, attr: SysfsAttr[T]) -> KernfsNode:
    show = None if attr.show is None else _Show(obj, attr.show, _callback_name(attr.name, "show"))
    store = (
        None if attr.store is None else _Store(obj, attr.store, _callback_name(attr.name, "store"))
    )
    return root.create_file(parent, attr.name, attr.mode, Attribute(show, store), size=PAGE_SIZE)


def create_bin_file(
    root: KernfsRoot, parent: KernfsNode, obj: T, attr: SysfsBinAttr[T]
) -> KernfsNode:
    read_fn, write_fn = attr.read, attr.write
    read: Callable[[int, int], Awaitable[bytes]] | None = None
    write: Callable[[int, bytes], Awaitable[int]] | None = None
    if read_fn is not None:
        read_frames = _call_frames(SYSCALL_READ, "kernfs_file_read_iter", f"{attr.name}_read")

        async def read(offset: int, count: int) -> bytes:
            with enter(read_frames):
                return await read_fn(obj, offset, count)

    if write_fn is not None:
        write_frames = _call_frames(SYSCALL_WRITE, "kernfs_fop_write_iter", f"{attr.name}_write")

        async def write(offset: int, data: bytes) -> int:
            with enter(write_frames):
                return await write_fn(obj, offset, data)

    size = attr.size(obj) if callable(attr.size) else attr.size
    return root.create_file(parent, attr.name, attr.mode, BinAttribute(read, write, size), size)


def create_group(
    root: KernfsRoot, parent: KernfsNode, obj: T, attrs: Iterable[SysfsAttr[T]]
) -> None:
    for attr in attrs:
        create_file(root, parent, obj, attr)
