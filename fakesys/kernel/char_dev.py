"""Character devices (fs/char_dev.c, fs/file_table.c) and their /dev nodes (devtmpfs).

An open of a device node looks the cdev up by its device number (-ENXIO if none), takes a
module reference for ``cdev->owner`` and another for ``fops->owner`` (-ENXIO if the module is
going), then calls the driver's open. The open file keeps its own lifetime from then on:
cdev_device_del() at unbind removes the node and the number, but a file that is already open
keeps calling the driver's fops until its last close, which drops both module references.
What those fops find when the device is gone is the driver's business: that is what the
lifetime patterns of :mod:`fakesys.drivers` show.

/dev nodes are regular files of the mount (FUSE cannot route I/O on character-device inodes);
the device number is in the class device's ``dev`` attribute and in ``/sys/dev/char``. Other
views of /dev (``fakesys run``'s) follow the nodes through ``Kernel.devtmpfs_mirrors``.

A driver's file operations take the kernel's arguments, with Python's types: ``open(inode,
file)``, ``read(file, count) -> bytes``, ``write(file, data) -> int``, ``poll(file) -> mask``,
``release(inode, file)``; errors are raised as :class:`~fakesys.kernfs.ErrnoError`.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from ..kernfs import DEFAULT_POLLMASK, ErrnoError, FileOps, KernfsNode, OpenFile
from . import core  # a cycle: core adds the /dev nodes defined here
from .calls import call, call_atomic, current_kernel
from .module import this_module
from .printk import KERN_ERR
from .slab import Embedded, Struct
from .stacktrace import SYSCALL_CLOSE, SYSCALL_OPEN, SYSCALL_READ, SYSCALL_WRITE, enter, frame
from .wait import reading_from

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel
    from .module import Module

CHRDEV_MAJOR_MAX = 255  # CHRDEV_MAJOR_HASH_SIZE; dynamic majors count down from 254
CHRDEV_MAJOR_DYN_END = 234
CHRDEV_MAJOR_DYN_EXT_START = 511
CHRDEV_MAJOR_DYN_EXT_END = 384
#: The majors find_dynamic_major() hands out, in its order: 254 down to 234, then 511 down to
#: 384 (fs/char_dev.c); once they are all taken, alloc_chrdev_region() fails with EBUSY.
DYNAMIC_MAJORS: tuple[int, ...] = (
    *range(CHRDEV_MAJOR_MAX - 1, CHRDEV_MAJOR_DYN_END - 1, -1),
    *range(CHRDEV_MAJOR_DYN_EXT_START, CHRDEV_MAJOR_DYN_EXT_END - 1, -1),
)
MINORBITS = 20

Devt = tuple[int, int]


def MKDEV(major: int, minor: int) -> Devt:
    return (major, minor)


def MAJOR(devt: Devt) -> int:
    return devt[0]


def MINOR(devt: Devt) -> int:
    return devt[1]


class Inode:
    """The inode of a device node, as the open sees it."""

    def __init__(self, rdev: Devt, cdev: Cdev) -> None:
        self.i_rdev = rdev
        self.i_cdev = cdev


class File:
    """``struct file`` of an open character device."""

    def __init__(self, of: OpenFile, inode: Inode) -> None:
        self.of = of
        self.f_inode = inode
        self.f_op: FileOperations | None = None
        self.private_data: object = None

    @property
    def f_flags(self) -> int:
        return self.of.flags

    @property
    def nonblocking(self) -> bool:
        """``file->f_flags & O_NONBLOCK``, as given at open (FUSE hides later fcntl()s)."""
        return self.of.nonblocking

    @property
    def opener(self) -> int:
        return self.of.caller.pid


OpenFn = Callable[[Inode, File], Awaitable[None]]
ReadFn = Callable[[File, int], Awaitable[bytes]]
WriteFn = Callable[[File, bytes], Awaitable[int]]
PollFn = Callable[[File], int]
ReleaseFn = Callable[[Inode, File], Awaitable[None]]


class FileOperations(Struct, name="file_operations", var="fops"):
    """``struct file_operations``. Made at the top of a driver file, it lives in the module's
    memory; ``owner`` (THIS_MODULE) is pinned while a file is open, and a driver that leaves
    it out lets its module go while files still call into it."""

    owner: Module | None
    open: OpenFn | None
    read: ReadFn | None
    write: WriteFn | None
    poll: PollFn | None
    release: ReleaseFn | None

    def __init__(
        self,
        *,
        owner: Module | None = None,
        open: OpenFn | None = None,
        read: ReadFn | None = None,
        write: WriteFn | None = None,
        poll: PollFn | None = None,
        release: ReleaseFn | None = None,
    ) -> None:
        module = this_module()
        self._zero(module.static_memory(type(self)) if module is not None else None)
        self.owner = owner
        self.open = open
        self.read = read
        self.write = write
        self.poll = poll
        self.release = release


class Cdev(Embedded):
    """``struct cdev``: the operations behind a range of device numbers."""

    C_SIZE = 104

    def __init__(self) -> None:
        self.ops: FileOperations | None = None
        self.owner: Module | None = None
        self.dev: Devt | None = None
        self.count = 0
        #: The device the cdev was added with (cdev_set_parent()).
        self.parent: Device | None = None


class CharDevices:
    """The character-device registry: majors (chrdevs[]) and the number map (cdev_map)."""

    def __init__(self) -> None:
        self.majors: dict[int, list[tuple[int, int, str]]] = {}
        self.cdev_map: dict[Devt, Cdev] = {}

    def register(self, major: int, first_minor: int, count: int, name: str) -> None:
        """__register_chrdev_region(): EBUSY for an overlapping range."""
        ranges = self.majors.setdefault(major, [])
        for first, n, _ in ranges:
            if first < first_minor + count and first_minor < first + n:
                raise ErrnoError(errno.EBUSY)
        ranges.append((first_minor, count, name))

    def find_dynamic_major(self) -> int:
        for major in DYNAMIC_MAJORS:
            if not self.majors.get(major):
                return major
        raise ErrnoError(errno.EBUSY)

    def unregister(self, major: int, first_minor: int, count: int) -> None:
        ranges = self.majors.get(major, [])
        for entry in ranges:
            if entry[:2] == (first_minor, count):
                ranges.remove(entry)
                break
        if not ranges:
            self.majors.pop(major, None)

    def names(self) -> list[tuple[int, str]]:
        """``/proc/devices``' character part: majors in order, each name once."""
        return sorted({(major, name) for major, rs in self.majors.items() for _, _, name in rs})


def alloc_chrdev_region(first_minor: int, count: int, name: str) -> Devt:
    """A free dynamic major for ``count`` minors from ``first_minor``; EBUSY when none is
    left (find_dynamic_major())."""
    kernel = current_kernel()
    registry = kernel.char_devices
    try:
        major = registry.find_dynamic_major()
    except ErrnoError:
        # __register_chrdev_region()
        kernel.log.emit(KERN_ERR, f'CHRDEV "{name}" dynamic allocation region is full')
        raise
    registry.register(major, first_minor, count, name)
    return MKDEV(major, first_minor)


def register_chrdev_region(devt: Devt, count: int, name: str) -> None:
    """Claim a fixed range (a subsystem's own major: 226 for DRM, 81 for V4L2)."""
    current_kernel().char_devices.register(MAJOR(devt), MINOR(devt), count, name)


def unregister_chrdev_region(devt: Devt, count: int) -> None:
    current_kernel().char_devices.unregister(MAJOR(devt), MINOR(devt), count)


def cdev_init(cdev: Cdev, fops: FileOperations) -> None:
    with frame("cdev_init"):
        cdev.touch(0, 104, write=True)
    cdev.ops = fops
    cdev.owner = fops.owner


def cdev_add(cdev: Cdev, devt: Devt, count: int) -> None:
    """Map the numbers: from now on an open of them reaches the fops."""
    with frame("cdev_add"):
        cdev.touch(0, 16, write=True)
    cdev.dev = devt
    cdev.count = count
    registry = current_kernel().char_devices
    for minor in range(MINOR(devt), MINOR(devt) + count):
        registry.cdev_map[MKDEV(MAJOR(devt), minor)] = cdev


def cdev_del(cdev: Cdev) -> None:
    """Unmap the numbers: no new opens. Files already open are untouched."""
    with frame("cdev_del"):
        cdev.touch(0, 16, write=True)
    if cdev.dev is None:
        return
    registry = current_kernel().char_devices
    major, first = cdev.dev
    for minor in range(first, first + cdev.count):
        if registry.cdev_map.get((major, minor)) is cdev:
            del registry.cdev_map[(major, minor)]


async def cdev_device_add(cdev: Cdev, dev: Device) -> None:
    """cdev_add() and device_add(); a failed device_add() takes the numbers back. Until it
    returns, userspace may already open the node (the kerneldoc's NOTE)."""
    if dev.devt is not None:
        cdev.parent = dev
        cdev_add(cdev, dev.devt, 1)
    try:
        await core.device_add(dev)
    except ErrnoError:
        if dev.devt is not None:
            cdev_del(cdev)
        raise


async def cdev_device_del(cdev: Cdev, dev: Device) -> None:
    """device_del() and cdev_del(): files already open keep calling the fops."""
    await core.device_del(dev)
    if dev.devt is not None:
        cdev_del(cdev)


def _try_get(module: Module | None) -> bool:
    return module is None or module.try_get()


def _put(module: Module | None) -> None:
    if module is not None:
        module.put()


async def chrdev_open(kernel: Kernel, devt: Devt, of: OpenFile) -> File:
    cdev = kernel.char_devices.cdev_map.get(devt)
    if cdev is None:  # kobj_lookup() found nothing: a stale node
        raise ErrnoError(errno.ENXIO)
    if not _try_get(cdev.owner):  # cdev_get()
        raise ErrnoError(errno.ENXIO)
    fops = cdev.ops
    assert fops is not None
    owner = fops.owner
    if not _try_get(owner):  # fops_get()
        _put(cdev.owner)
        raise ErrnoError(errno.ENXIO)
    inode = Inode(devt, cdev)
    file = File(of, inode)
    file.f_op = fops
    open_fn = fops.open
    if open_fn is not None:
        try:
            await call(kernel, open_fn, inode, file)
        except BaseException:
            _put(owner)
            _put(cdev.owner)
            raise
    return file


async def fput(kernel: Kernel, file: File) -> None:
    """The last close (__fput()): the driver's release, then the two module references."""
    fops = file.f_op
    if fops is None:
        return
    file.f_op = None
    owner, cdev_owner = fops.owner, file.f_inode.i_cdev.owner
    try:
        release = fops.release
        if release is not None:
            await call(kernel, release, file.f_inode, file)
    finally:
        _put(owner)
        _put(cdev_owner)


class ChrdevNode(FileOps):
    """The /dev node of a character device: every call goes to the driver's fops."""

    may_block = True
    seekable = False

    def __init__(self, kernel: Kernel, dev: Device) -> None:
        self.kernel = kernel
        assert dev.devt is not None
        self.devt = dev.devt
        #: Whose hardware a read waits for: the physical device behind the class device.
        self.hw = dev.physical().hw

    @staticmethod
    def _file(of: OpenFile) -> File:
        assert isinstance(of.private, File)
        return of.private

    async def open(self, of: OpenFile) -> None:
        with enter(SYSCALL_OPEN):
            of.private = await chrdev_open(self.kernel, self.devt, of)

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        file = self._file(of)
        fops = file.f_op
        assert fops is not None
        with enter(SYSCALL_READ):
            read = fops.read
            if read is None:
                raise ErrnoError(errno.EINVAL)
            token = reading_from.set(self.hw)
            try:
                data: bytes = await call(self.kernel, read, file, size)
            finally:
                reading_from.reset(token)
            return data

    async def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        file = self._file(of)
        fops = file.f_op
        assert fops is not None
        with enter(SYSCALL_WRITE):
            write = fops.write
            if write is None:
                raise ErrnoError(errno.EINVAL)
            written: int = await call(self.kernel, write, file, data)
            return written

    def poll(self, of: OpenFile) -> int:
        file = self._file(of)
        fops = file.f_op
        assert fops is not None
        poll = fops.poll
        if poll is None:
            return DEFAULT_POLLMASK
        return call_atomic(self.kernel, poll, file)

    async def release(self, of: OpenFile) -> None:
        with enter(SYSCALL_CLOSE), contextlib.suppress(ErrnoError):
            # ->release() returns nothing anyone sees; an error here is a task that died in
            # the release (an oops), and the close has long returned to user space.
            await fput(self.kernel, self._file(of))


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
    node = kernel.kernfs.create_file(parent, name, mode, ChrdevNode(kernel, dev))
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
