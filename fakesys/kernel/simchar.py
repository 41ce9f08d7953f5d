"""Character-device drivers with a lifetime policy: the devres article, the NetBSD
audio detach design, the V4L2 unplug RFC and the 2002 driverfs module race.

Each driver registers one character device per bound device: ``/dev/<name>N``, the class
device ``/sys/class/<class>/<name>N`` with ``dev``, and ``/sys/dev/char/M:N``. Reads wait for
data fed to the device's hardware; writes are consumed. What happens to an open file when the
device is unbound is the policy:

``devm`` (the devres article, buggy)
    The private data is devm_kzalloc()'d in probe, so the core frees it right after remove().
    A later read, write or close touches freed memory: a KASAN slab-use-after-free report in
    ``<drv>_read``/``_write``/``_release``, taint B, and the buggy kernel's result (a read gets
    what was left in the freed buffer, else 0 bytes; a write "succeeds"; close returns 0).
``refcounted`` (the devres article, fixed)
    The private data is reference counted: the driver holds one reference, each open file one.
    Unbind marks it dead and wakes blocked readers; I/O then fails with ENODEV; the last close
    frees it.
``revoke`` (the NetBSD audio detach design)
    Detach invalidates every open file, then waits for operations in flight (passive
    references) to drain, then frees. A read blocked in the driver holds ``unbind`` until it
    gets data or its caller is interrupted; later calls fail with ENXIO; close always works.
``unplug`` (the V4L2 unplug RFC)
    Operations run in counted enter/exit sections. Unplug refuses new entries, wakes blocked
    operations (ENODEV), waits for the sections to exit, and only then does remove() free the
    resources they use.
``irq-devm`` / ``irq-fixed`` (the devres article, its tasklet half)
    The device's interrupt schedules a tasklet that uses devm-allocated state. The buggy driver
    kills the tasklet in remove() but leaves the IRQ to devres, released after remove(): an
    interrupt in that window schedules the tasklet again, which then runs on freed state. The
    fixed driver frees the IRQ in remove() before killing the tasklet. Their files behave as
    ``refcounted``.
``modref-racy`` / ``modref-locked`` (the 2002 driverfs module race)
    open() finds the driver and then takes its module reference. The racy driver does it
    without a lock, so an unload in between frees the driver and the open reads freed memory;
    the locked one holds the driver lock, which unload also takes, so the open fails cleanly
    with ENXIO. Their files behave as ``refcounted``.
"""

from __future__ import annotations

import errno
import select
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError
from .char_dev import (
    Cdev,
    File,
    FileOperations,
    alloc_chrdev_region,
    cdev_device_add,
    cdev_device_del,
)
from .class_ import Class
from .core import Device, put_device
from .devres import devm_kzalloc
from .irq import Tasklet, devm_free_irq, devm_request_irq
from .kref import Kref
from .simdrv import SimBehaviour
from .slab import Object
from .stacktrace import frame, stack

if TYPE_CHECKING:
    from .driver import Driver
    from .module import Module

POLICIES = (
    "devm",
    "refcounted",
    "revoke",
    "unplug",
    "irq-devm",
    "irq-fixed",
    "modref-racy",
    "modref-locked",
)
PRIV_SIZE = 256
RX_MAX = 64 * 1024
# Offsets of the fields the simulated code touches, for the reports.
OFF_OPEN_COUNT = 0x00
OFF_RX_LEN = 0x08
OFF_RX_WAIT = 0x10
OFF_TX_LEN = 0x18
OFF_TASKLET = 0x40
OFF_DRIVER_OWNER = 0x28

POLL_GONE = select.POLLERR | select.POLLHUP


class WaitQueue:
    """``wait_queue_head_t``: park until a condition holds; woken by wake_up_all()."""

    def __init__(self) -> None:
        self._lot = trio.lowlevel.ParkingLot()

    async def park(self) -> None:
        await self._lot.park()

    def wake_up_all(self) -> None:
        self._lot.unpark_all()


class CharPriv:
    """A bound device's driver state (``struct <drv>_priv``)."""

    def __init__(self, obj: Object, dev: Device, minor: int) -> None:
        self.obj = obj
        self.dev = dev
        self.minor = minor
        self.rx = bytearray()
        self.overruns = 0
        self.tx_bytes = 0
        self.open_count = 0
        self.wq = WaitQueue()
        self.kref: Kref | None = None
        self.gone = False  # dead (refcounted), dying (revoke) or unplugged
        self.users = 0  # operations in flight: psrefs (revoke) or enter/exit sections (unplug)
        self.drained = trio.Event()
        self.files: set[File] = set()
        self.cdev: Cdev | None = None
        self.class_dev: Device | None = None
        self.irqdata: Object | None = None
        self.tasklet: Tasklet | None = None

    def receive(self, data: bytes) -> None:
        # The receive buffer is a FIFO of RX_MAX bytes: what does not fit is dropped, as a
        # full hardware FIFO overruns.
        room = RX_MAX - len(self.rx)
        self.overruns += max(0, len(data) - room)
        self.rx += data[: max(0, room)]
        self.wq.wake_up_all()
        if self.cdev is not None and self.class_dev is not None:
            node = self.class_dev.kernel.dev_kn.walk(self.class_dev.devnode_path())
            if node is not None:
                node.notify()  # wake pollers

    def enter(self) -> bool:
        if self.gone:
            return False
        self.users += 1
        return True

    def exit(self) -> None:
        self.users -= 1
        if self.gone and self.users == 0:
            self.drained.set()

    async def wait_drained(self) -> None:
        if self.users:
            await self.drained.wait()


class CharBehaviour(SimBehaviour, FileOperations):
    """Probe and remove of a character-device driver, and its file operations. The policy
    is chosen by the subclass; the data path is shared."""

    policy = ""

    def __init__(
        self, name: str, module: Module | None, cls: Class, node_name: str, mode: int
    ) -> None:
        SimBehaviour.__init__(self, module)
        FileOperations.__init__(self, module)
        self.name = name  # the driver's: functions and structures are named after it
        self.cls = cls
        self.node_name = node_name
        self.mode = mode
        self.major = alloc_chrdev_region(cls.kernel, node_name.rsplit("/", 1)[-1])
        self.minors: set[int] = set()

    def module_exit(self) -> None:
        # unregister_chrdev_region() in the module's exit
        self.cls.kernel.chrdevs.pop(self.major, None)

    def _fn(self, what: str) -> str:
        return f"{self.name}_{what}"

    # -- probe and remove --

    def alloc_priv(self, dev: Device, minor: int) -> CharPriv:
        """devm_kzalloc() here; the fixed policies override it with a counted allocation."""
        obj = devm_kzalloc(dev, PRIV_SIZE, f"struct {self.name}_priv")
        return CharPriv(obj, dev, minor)

    async def probe(self, drv: Driver, dev: Device) -> None:
        minor = min(set(range(len(self.minors) + 1)) - self.minors)
        priv = self.alloc_priv(dev, minor)
        self.minors.add(minor)
        priv.cdev = Cdev(dev.kernel, self, self.module)
        priv.cdev.container = priv
        # A node name with a directory ("dri/card") names the device after its last part
        # and puts the node in that directory, as a class's devnode() does.
        priv.class_dev = Device(
            dev.kernel,
            f"{self.node_name.rsplit('/', 1)[-1]}{minor}",
            cls=self.cls,
            parent=dev,
            devt=(self.major, minor),
        )
        if "/" in self.node_name:
            priv.class_dev.devnode = f"{self.node_name}{minor}"
        priv.class_dev.devnode_mode = self.mode
        dev.driver_data = priv
        self.setup(dev, priv)
        dev.hw.on_rx = priv.receive
        await cdev_device_add(priv.cdev, priv.class_dev)

    def setup(self, dev: Device, priv: CharPriv) -> None:
        """Policy-specific probe steps, before the device node appears."""

    async def remove(self, drv: Driver, dev: Device) -> None:
        priv = dev.driver_data
        assert isinstance(priv, CharPriv)
        assert priv.cdev is not None and priv.class_dev is not None
        await cdev_device_del(priv.cdev, priv.class_dev)
        put_device(priv.class_dev)
        self.minors.discard(priv.minor)
        await self.teardown(dev, priv)
        # The hardware is stopped last: operations drained by the teardown may still need it.
        dev.hw.on_rx = None

    async def teardown(self, dev: Device, priv: CharPriv) -> None:
        """Policy-specific remove steps, after the node is gone."""

    # -- the data path, shared: the policy decides what "gone" means --

    def priv_of(self, file: File) -> CharPriv | None:
        priv = file.private_data
        assert priv is None or isinstance(priv, CharPriv)
        return priv

    def gone_errno(self) -> int:
        return errno.ENODEV

    async def read_data(
        self, priv: CharPriv, file: File, count: int, *, wake_on_gone: bool
    ) -> bytes:
        while not priv.rx:
            if wake_on_gone and priv.gone:
                raise ErrnoError(self.gone_errno())
            if file.nonblocking:
                raise ErrnoError(errno.EAGAIN)
            priv.dev.hw.readers += 1
            try:
                await priv.wq.park()
            finally:
                priv.dev.hw.readers -= 1
        await priv.dev.kernel.hold.reach("read", priv.dev)
        # Copying out reads the driver's buffer: freed memory if the data did not outlive
        # an unbind that happened meanwhile.
        priv.obj.access(OFF_RX_LEN, 8, write=False)
        data = bytes(priv.rx[:count])
        del priv.rx[:count]
        return data

    async def open(self, cdev: Cdev, file: File) -> None:
        priv = cdev.container
        assert isinstance(priv, CharPriv)
        with frame(self._fn("open"), module=self.module_name):
            priv.obj.access(OFF_OPEN_COUNT, 4, write=True)
            priv.open_count += 1
            file.private_data = priv
            self.opened(priv, file)

    def opened(self, priv: CharPriv, file: File) -> None:
        """Policy-specific open steps."""

    async def read(self, file: File, count: int) -> bytes:
        priv = self.priv_of(file)
        with frame(self._fn("read"), module=self.module_name):
            if priv is None or priv.gone:
                raise ErrnoError(self.gone_errno())
            return await self.read_data(priv, file, count, wake_on_gone=True)

    async def write(self, file: File, data: bytes) -> int:
        priv = self.priv_of(file)
        with frame(self._fn("write"), module=self.module_name):
            if priv is None or priv.gone:
                raise ErrnoError(self.gone_errno())
            priv.tx_bytes += len(data)
            return len(data)

    def poll(self, file: File) -> int:
        priv = self.priv_of(file)
        if priv is None or priv.gone:
            return POLL_GONE
        mask = select.POLLOUT | select.POLLWRNORM
        if priv.rx:
            mask |= select.POLLIN | select.POLLRDNORM
        return mask

    async def release(self, file: File) -> None:
        priv = self.priv_of(file)
        with frame(self._fn("release"), module=self.module_name):
            if priv is not None:
                self.closing(priv, file)

    def closing(self, priv: CharPriv, file: File) -> None:
        """Policy-specific close steps."""
        priv.open_count -= 1


class DevmChar(CharBehaviour):
    """The devres article, buggy: file operations use devm-allocated data freed at unbind."""

    policy = "devm"

    async def read(self, file: File, count: int) -> bytes:
        priv = self.priv_of(file)
        assert priv is not None
        with frame(self._fn("read"), module=self.module_name):
            if not priv.obj.access(OFF_RX_LEN, 8, write=False):
                # The freed buffer is read as it was left.
                data = bytes(priv.rx[:count])
                del priv.rx[:count]
                return data
            return await self.read_data(priv, file, count, wake_on_gone=False)

    async def write(self, file: File, data: bytes) -> int:
        priv = self.priv_of(file)
        assert priv is not None
        with frame(self._fn("write"), module=self.module_name):
            priv.obj.access(OFF_TX_LEN, 8, write=True)
            priv.tx_bytes += len(data)
            return len(data)

    def poll(self, file: File) -> int:
        priv = self.priv_of(file)
        assert priv is not None
        with frame(self._fn("poll"), module=self.module_name):
            priv.obj.access(OFF_RX_LEN, 8, write=False)
        mask = select.POLLOUT | select.POLLWRNORM
        return mask | (select.POLLIN | select.POLLRDNORM if priv.rx else 0)

    def closing(self, priv: CharPriv, file: File) -> None:
        priv.obj.access(OFF_OPEN_COUNT, 4, write=True)
        priv.open_count -= 1


class RefcountedChar(CharBehaviour):
    """The devres article, fixed: the data lives until the last reference, driver's or file's."""

    policy = "refcounted"

    def alloc_priv(self, dev: Device, minor: int) -> CharPriv:
        slab = dev.kernel.slab
        obj = slab.kmalloc(PRIV_SIZE, f"struct {self.name}_priv", stack("kmalloc_trace"))
        priv = CharPriv(obj, dev, minor)

        def release() -> None:
            with frame(self._fn("priv_release"), module=self.module_name):
                slab.kfree(obj, stack("kfree"))

        priv.kref = Kref(release)
        return priv

    def opened(self, priv: CharPriv, file: File) -> None:
        assert priv.kref is not None
        priv.kref.get()

    def closing(self, priv: CharPriv, file: File) -> None:
        priv.open_count -= 1
        assert priv.kref is not None
        priv.kref.put()

    async def teardown(self, dev: Device, priv: CharPriv) -> None:
        priv.gone = True
        priv.wq.wake_up_all()
        assert priv.kref is not None
        priv.kref.put()


class RevokeChar(CharBehaviour):
    """NetBSD audio detach: detach revokes the open files and drains the operations in flight."""

    policy = "revoke"

    def gone_errno(self) -> int:
        return errno.ENXIO

    def alloc_priv(self, dev: Device, minor: int) -> CharPriv:
        obj = dev.kernel.slab.kmalloc(
            PRIV_SIZE, f"struct {self.name}_softc", stack("kmalloc_trace")
        )
        return CharPriv(obj, dev, minor)

    def opened(self, priv: CharPriv, file: File) -> None:
        priv.files.add(file)

    async def read(self, file: File, count: int) -> bytes:
        priv = self.priv_of(file)
        with frame(self._fn("read"), module=self.module_name):
            # psref_acquire() inside a pserialize read section: a revoked file has no softc.
            if priv is None or not priv.enter():
                raise ErrnoError(errno.ENXIO)
            try:
                return await self.read_data(priv, file, count, wake_on_gone=False)
            finally:
                priv.exit()

    def closing(self, priv: CharPriv, file: File) -> None:
        # Only a file still on the list is taken off it; close never fails.
        if file in priv.files:
            priv.files.discard(file)
            priv.open_count -= 1

    async def teardown(self, dev: Device, priv: CharPriv) -> None:
        priv.gone = True
        for file in priv.files:  # (a) prevent new users
            file.private_data = None
        priv.files.clear()
        await priv.wait_drained()  # (b) wait for existing users to drain
        with frame("psref_target_destroy"):
            dev.kernel.slab.kfree(priv.obj, stack("kfree"))  # (c) free it


class UnplugChar(RefcountedChar):
    """The V4L2 unplug RFC: enter/exit sections; unplug wakes and waits for them before freeing."""

    policy = "unplug"

    def setup(self, dev: Device, priv: CharPriv) -> None:
        # The resources the file operations use are device-managed; the sections keep them
        # from being freed under an operation.
        priv.irqdata = devm_kzalloc(dev, 128, f"struct {self.name}_resources")

    async def read(self, file: File, count: int) -> bytes:
        priv = self.priv_of(file)
        with frame(self._fn("read"), module=self.module_name):
            if priv is None or not priv.enter():  # video_device_enter()
                raise ErrnoError(errno.ENODEV)
            try:
                assert priv.irqdata is not None
                priv.irqdata.access(0, 8, write=False)
                return await self.read_data(priv, file, count, wake_on_gone=True)
            finally:
                priv.exit()  # video_device_exit()

    async def teardown(self, dev: Device, priv: CharPriv) -> None:
        # video_device_unplug(): no new entries, wake the blocked ones, wait for the sections
        # to exit; the resources are freed by devres after this returns.
        priv.gone = True
        priv.wq.wake_up_all()
        with frame("video_device_unplug"):
            await priv.wait_drained()
        assert priv.kref is not None
        priv.kref.put()


class IrqChar(RefcountedChar):
    """The devres article, tasklet half: an interrupt schedules a tasklet on devm state."""

    policy = "irq-devm"

    def setup(self, dev: Device, priv: CharPriv) -> None:
        irqdata = devm_kzalloc(dev, 128, f"struct {self.name}_irqdata")
        priv.irqdata = irqdata
        module = self.module_name

        def tasklet_handler() -> None:
            with frame(self._fn("tasklet_handler"), module=module):
                irqdata.access(OFF_TASKLET, 8, write=True)

        def irq_handler() -> None:
            with frame(self._fn("irq_handler"), module=module):
                if irqdata.access(OFF_TASKLET, 8, write=True):
                    assert priv.tasklet is not None
                    priv.tasklet.schedule()

        priv.tasklet = Tasklet(dev.kernel, tasklet_handler, self._fn("tasklet_handler"), module)
        devm_request_irq(dev, dev.hw.irq, irq_handler, self._fn("irq_handler"), module)

    async def teardown(self, dev: Device, priv: CharPriv) -> None:
        assert priv.tasklet is not None
        await self.free_irq_and_kill_tasklet(dev, priv.tasklet)
        await super().teardown(dev, priv)

    async def free_irq_and_kill_tasklet(self, dev: Device, tasklet: Tasklet) -> None:
        # Buggy: the IRQ stays requested until devres runs, after remove().
        await tasklet.kill()


class IrqFixedChar(IrqChar):
    policy = "irq-fixed"

    async def free_irq_and_kill_tasklet(self, dev: Device, tasklet: Tasklet) -> None:
        devm_free_irq(dev, dev.hw.irq)
        await tasklet.kill()


class ModrefChar(RefcountedChar):
    """The 2002 driverfs race: open() looks the driver up, then takes its module reference."""

    policy = "modref-racy"
    locked = False

    def __init__(
        self, name: str, module: Module | None, cls: Class, node_name: str, mode: int
    ) -> None:
        super().__init__(name, module, cls, node_name, mode)
        self.driver: Driver | None = None

    async def probe(self, drv: Driver, dev: Device) -> None:
        self.driver = drv
        await super().probe(drv, dev)

    async def get_owner(self, cdev: Cdev) -> bool:
        """Replaces the core's cdev_get(): the 2002 get_driver() and try_inc_mod_count()."""
        kernel = cdev.kernel
        if self.locked:
            async with kernel.driver_lock:
                return await self._lookup_and_get(cdev)
        return await self._lookup_and_get(cdev)

    async def _lookup_and_get(self, cdev: Cdev) -> bool:
        drv = self.driver  # scan_driver_list()
        priv = cdev.container
        await cdev.kernel.hold.reach("module_get", priv.dev if isinstance(priv, CharPriv) else None)
        if drv is None or self.module is None:
            return False
        obj = getattr(drv, "obj", None)
        with frame("get_driver"):
            if isinstance(obj, Object) and not obj.access(OFF_DRIVER_OWNER, 8, write=False):
                return False  # drv->owner read from freed memory: no module to pin
        return self.module.try_get()

    def setup(self, dev: Device, priv: CharPriv) -> None:
        assert priv.cdev is not None
        priv.cdev.get_owner = self.get_owner


class ModrefLockedChar(ModrefChar):
    policy = "modref-locked"
    locked = True


BEHAVIOURS: dict[str, type[CharBehaviour]] = {
    "devm": DevmChar,
    "refcounted": RefcountedChar,
    "revoke": RevokeChar,
    "unplug": UnplugChar,
    "irq-devm": IrqChar,
    "irq-fixed": IrqFixedChar,
    "modref-racy": ModrefChar,
    "modref-locked": ModrefLockedChar,
}
