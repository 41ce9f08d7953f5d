"""Character devices (fs/char_dev.c, fs/file_table.c) and their /dev nodes (devtmpfs).

An open of a device node looks the cdev up by its device number (-ENXIO if none), takes a
module reference for ``cdev->owner`` and another for ``fops->owner`` (-ENXIO if the module is
going), then calls the driver's open. The open file keeps its own lifetime from then on:
cdev_device_del() at unbind removes the node and the number, but a file that is already open
keeps calling the driver's fops until its last close, which drops both module references.
What those fops find when the device is gone is the driver's business: that is what the
lifetime policies of :mod:`.simchar` show.

/dev nodes are regular files of the mount (FUSE cannot route I/O on character-device inodes);
the device number is in the class device's ``dev`` attribute and in ``/sys/dev/char``. Other
views of /dev (``fakesys run``'s) follow the nodes through ``Kernel.devtmpfs_mirrors``.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ..kernfs import ErrnoError, FileOps, KernfsNode, OpenFile
from . import core  # a cycle: core adds the /dev nodes defined here
from .stacktrace import SYSCALL_CLOSE, SYSCALL_OPEN, SYSCALL_READ, SYSCALL_WRITE, enter

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel
    from .module import Module

CHRDEV_MAJOR_MAX = 255  # CHRDEV_MAJOR_HASH_SIZE; dynamic majors count down from 254
CHRDEV_MAJOR_DYN_END = 234


class File:
    """``struct file`` of an open character device."""

    def __init__(self, of: OpenFile) -> None:
        self.of = of
        self.f_op: FileOperations | None = None
        self.cdev: Cdev | None = None
        self.private_data: object = None

    @property
    def nonblocking(self) -> bool:
        return self.of.nonblocking

    @property
    def opener(self) -> int:
        return self.of.caller.pid


class FileOperations:
    """A driver's ``struct file_operations``. ``owner`` is pinned while a file is open."""

    def __init__(self, owner: Module | None) -> None:
        self.owner = owner

    async def open(self, cdev: Cdev, file: File) -> None:
        pass

    async def read(self, file: File, count: int) -> bytes:
        raise ErrnoError(errno.EINVAL)

    async def write(self, file: File, data: bytes) -> int:
        raise ErrnoError(errno.EINVAL)

    def poll(self, file: File) -> int:
        return 0

    async def release(self, file: File) -> None:
        pass


class Cdev:
    """``struct cdev``: the operations behind a range of device numbers."""

    def __init__(self, kernel: Kernel, ops: FileOperations, owner: Module | None) -> None:
        self.kernel = kernel
        self.ops = ops
        self.owner = owner
        self.devt: tuple[int, int] | None = None
        self.refs = 1
        #: The driver state this cdev is embedded in (container_of), set by the driver.
        self.container: object = None
        #: Replaces the core's module pinning at open, for drivers that do it themselves.
        self.get_owner: Callable[[Cdev], Awaitable[bool]] | None = None


def alloc_chrdev_region(kernel: Kernel, name: str) -> int:
    """A free dynamic major for ``name`` (find_dynamic_major())."""
    for major in range(CHRDEV_MAJOR_MAX - 1, CHRDEV_MAJOR_DYN_END - 1, -1):
        if major not in kernel.chrdevs:
            kernel.chrdevs[major] = name
            return major
    raise ErrnoError(errno.EBUSY)


def cdev_add(cdev: Cdev, devt: tuple[int, int]) -> None:
    cdev.devt = devt
    cdev.kernel.cdev_map[devt] = cdev


def cdev_del(cdev: Cdev) -> None:
    """Unmap the number: no new opens. Files already open are untouched."""
    if cdev.devt is not None and cdev.kernel.cdev_map.get(cdev.devt) is cdev:
        del cdev.kernel.cdev_map[cdev.devt]
    cdev.refs -= 1


async def cdev_device_add(cdev: Cdev, dev: Device) -> None:
    if dev.devt is not None:
        cdev_add(cdev, dev.devt)
    try:
        await core.device_add(dev)
    except ErrnoError:
        if dev.devt is not None:
            cdev_del(cdev)
        raise


async def cdev_device_del(cdev: Cdev, dev: Device) -> None:
    await core.device_del(dev)
    if dev.devt is not None:
        cdev_del(cdev)


def _try_get(module: Module | None) -> bool:
    return module is None or module.try_get()


def _put(module: Module | None) -> None:
    if module is not None:
        module.put()


async def chrdev_open(kernel: Kernel, devt: tuple[int, int], of: OpenFile) -> File:
    cdev = kernel.cdev_map.get(devt)
    if cdev is None:  # kobj_lookup() found nothing: a stale node
        raise ErrnoError(errno.ENXIO)
    pinned = await cdev.get_owner(cdev) if cdev.get_owner else _try_get(cdev.owner)  # cdev_get()
    if not pinned:
        raise ErrnoError(errno.ENXIO)
    cdev.refs += 1
    fops = cdev.ops
    if not _try_get(fops.owner):  # fops_get()
        _cdev_put(cdev)
        raise ErrnoError(errno.ENXIO)
    file = File(of)
    file.f_op = fops
    file.cdev = cdev
    try:
        await fops.open(cdev, file)
    except BaseException:
        _put(fops.owner)
        _cdev_put(cdev)
        raise
    return file


def _cdev_put(cdev: Cdev) -> None:
    cdev.refs -= 1
    _put(cdev.owner)


async def fput(file: File) -> None:
    """The last close (__fput()): the driver's release, then the two module references."""
    if file.f_op is None:
        return
    fops = file.f_op
    try:
        await fops.release(file)
    finally:
        _put(fops.owner)
        if file.cdev is not None:
            _cdev_put(file.cdev)
        file.f_op = None


class ChrdevNode(FileOps):
    """The /dev node of a character device: every call goes to the driver's fops."""

    may_block = True
    seekable = False

    def __init__(self, kernel: Kernel, devt: tuple[int, int]) -> None:
        self.kernel = kernel
        self.devt = devt

    @staticmethod
    def _file(of: OpenFile) -> File:
        assert isinstance(of.private, File)
        return of.private

    async def open(self, of: OpenFile) -> None:
        with enter(SYSCALL_OPEN):
            of.private = await chrdev_open(self.kernel, self.devt, of)

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        file = self._file(of)
        assert file.f_op is not None
        with enter(SYSCALL_READ):
            return await file.f_op.read(file, size)

    async def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        file = self._file(of)
        assert file.f_op is not None
        with enter(SYSCALL_WRITE):
            return await file.f_op.write(file, data)

    def poll(self, of: OpenFile) -> int:
        file = self._file(of)
        assert file.f_op is not None
        return file.f_op.poll(file)

    async def release(self, of: OpenFile) -> None:
        with enter(SYSCALL_CLOSE):
            await fput(self._file(of))


class DevtmpfsMirror(Protocol):
    """Another /dev that shows the nodes of this one (``fakesys run``'s). It is told of a new
    node before the device's ``add`` uevent goes out, as device_add() sends it only once
    devtmpfs_create_node() has returned, and of a node going before it goes."""

    async def node_created(self, path: str) -> None: ...

    async def node_deleted(self, path: str) -> None: ...


async def devtmpfs_create_node(dev: Device, mode: int) -> KernfsNode:
    """``/dev/<devname>``; a name with slashes gets its directories."""
    kernel = dev.kernel
    assert dev.devt is not None
    path = dev.devnode_path()
    *dirs, name = path.split("/")
    parent = kernel.dev_kn
    for part in dirs:
        parent = parent.lookup(part) or kernel.kernfs.create_dir(parent, part)
    node = kernel.kernfs.create_file(parent, name, mode, ChrdevNode(kernel, dev.devt))
    for mirror in kernel.devtmpfs_mirrors:
        await mirror.node_created(path)
    return node


async def devtmpfs_delete_node(dev: Device) -> None:
    kernel = dev.kernel
    node = kernel.dev_kn.walk(dev.devnode_path())
    if node is None:
        return
    for mirror in kernel.devtmpfs_mirrors:
        await mirror.node_deleted(dev.devnode_path())
    parent = node.parent
    await kernel.kernfs.remove(node)
    while parent is not None and parent is not kernel.dev_kn and not parent.children:
        grand = parent.parent
        await kernel.kernfs.remove(parent)
        parent = grand
