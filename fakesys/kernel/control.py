"""fakesys's control plane, in the style of debugfs: ``sys/kernel/debug/fakesys/``.

================================  ===========================================================
``delete_module``                 write a module name: rmmod (ENOENT unknown, EWOULDBLOCK in use)
``init_module``                   write a module name: load it again (EEXIST if loaded)
``hold/<point>``                  ``1`` arms, ``0`` releases; reads ``off``, ``armed`` or ``held``
``delay/<point>``                 a pause in milliseconds at the same place, on the engine clock
``kasan_multi_shot``              ``1``: report every use after free, not only the first
``debug_locks``                   lockdep on (1) or off (0); the first report or taint turns it off;
                                  turning it back on on a tainted kernel clears the taint (below)
``advance_clock``                 write seconds: the engine's clock jumps ahead (timeouts fire)
``uevents``                       the uevent stream, as ``udevadm monitor --kernel --property``
``deferred_tasks``                how many tasks of deferred work (timers included) are alive
``devices/<dev>/feed``            bytes written here arrive from the device's hardware
``devices/<dev>/irq``             a write raises the device's interrupt; reads the count
``devices/<dev>/hang``            a write makes the hardware hang (its status says so, and it
                                  raises its interrupt): a GPU driver takes its coredump
``devices/<dev>/readers``         how many reads are blocked waiting for the device's data
``devices/<dev>/hold/<point>``    as ``hold/<point>``, for this device's operations only
``devices/<dev>/delay/<point>``   as ``delay/<point>``, for this device's operations only
================================  ===========================================================

The hold points are listed in :data:`fakesys.kernel.hold.HOLD_POINTS`.
"""

from __future__ import annotations

import collections
import errno
import functools
import select
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError, FileOps, KernfsNode, OpenFile
from .hold import HoldPoint
from .hw import Hardware
from .lib import buf_to_str, kstrtobool, kstrtoul
from .module import delete_module
from .printk import KERN_WARNING
from .sysfs import RW, WO, SysfsAttr, create_file

if TYPE_CHECKING:
    from .kernel import Kernel

CONTROL_MODE = 0o600


def _module_name(buf: bytes) -> str:
    name = buf_to_str(buf).strip()
    if not name:
        raise ErrnoError(errno.EINVAL)
    return name


async def _delete_module_store(kernel: Kernel, buf: bytes) -> int:
    await delete_module(kernel, _module_name(buf))
    return len(buf)


async def _init_module_store(kernel: Kernel, buf: bytes) -> int:
    name = _module_name(buf)
    if name in kernel.modules:
        raise ErrnoError(errno.EEXIST)
    if kernel.module_loader is None:
        raise ErrnoError(errno.ENOENT)
    await kernel.module_loader(name)
    return len(buf)


def _debug_locks_show(kernel: Kernel) -> str:
    return f"{int(kernel.lockdep.debug_locks)}\n"


async def _debug_locks_store(kernel: Kernel, buf: bytes) -> int:
    """Lock debugging on or off.

    A real kernel never turns lock debugging back on: after the first report or taint it stays
    off until reboot, so no lockdep report ever follows taint B. Scripts that share one mount
    still need lockdep for their own step. So turning it back on reboots the checkers, and the
    log says what it did: the taint is cleared, lockdep forgets the dependencies it learnt (a
    cycle it reported is reported again when it closes again), KASAN may report again, and
    oopses are counted from #1. Reports after that read as from a freshly booted kernel, as
    they would be; the devices, modules and dumps stay as they are."""
    if not kstrtobool(buf_to_str(buf)):
        kernel.lockdep.debug_locks_off()
        return len(buf)
    if kernel.lockdep.debug_locks:
        return len(buf)
    tainted = kernel.taint.mask
    kernel.taint.clear()
    kernel.lockdep.reset()
    kernel.kasan.reset()
    kernel.die_counter = 0
    note = f"taint {tainted} cleared, " if tainted else ""
    kernel.log.emit(
        KERN_WARNING,
        f"fakesys: debug_locks re-enabled from the control plane: {note}lock dependencies "
        "forgotten, KASAN and oops reports reset, as after a reboot",
    )
    return len(buf)


async def _advance_clock_store(kernel: Kernel, buf: bytes) -> int:
    """Move the clock, then return once the work that fell due has run, so a script that
    advances past a timeout sees its effect."""
    kernel.clock.advance(kstrtoul(buf_to_str(buf), 10))
    await kernel.settle_due_work()
    return len(buf)


def _deferred_tasks_show(kernel: Kernel) -> str:
    return f"{kernel.deferred_tasks}\n"


def _switch(name: str, owner: str, flag: str) -> SysfsAttr[Kernel]:
    """A 0/1 file (kstrtobool on write) for the boolean ``kernel.<owner>.<flag>``."""

    def show(kernel: Kernel) -> str:
        return f"{int(getattr(getattr(kernel, owner), flag))}\n"

    async def store(kernel: Kernel, buf: bytes) -> int:
        setattr(getattr(kernel, owner), flag, kstrtobool(buf_to_str(buf)))
        return len(buf)

    return SysfsAttr(name, RW, show, store)


async def _hold_store(point: HoldPoint, buf: bytes) -> int:
    point.store(buf)
    return len(buf)


def _delay_show(point: HoldPoint) -> str:
    return f"{point.delay_ms}\n"


async def _delay_store(point: HoldPoint, buf: bytes) -> int:
    point.delay_ms = kstrtoul(buf_to_str(buf), 10)
    return len(buf)


async def _feed_store(hw: Hardware, buf: bytes) -> int:
    hw.feed(buf)
    return len(buf)


def _irq_show(hw: Hardware) -> str:
    return f"{hw.irq.count}\n"


async def _irq_store(hw: Hardware, buf: bytes) -> int:
    hw.irq.raise_irq()
    return len(buf)


async def _hang_store(hw: Hardware, buf: bytes) -> int:
    hw.hang()
    return len(buf)


KERNEL_FILES = (
    SysfsAttr["Kernel"]("delete_module", WO, store=_delete_module_store),
    SysfsAttr["Kernel"]("init_module", WO, store=_init_module_store),
    _switch("kasan_multi_shot", "kasan", "multi_shot"),
    SysfsAttr["Kernel"]("debug_locks", RW, _debug_locks_show, _debug_locks_store),
    SysfsAttr["Kernel"]("advance_clock", WO, store=_advance_clock_store),
    SysfsAttr["Kernel"]("deferred_tasks", 0o400, _deferred_tasks_show),
)
HW_FILES = (
    SysfsAttr[Hardware]("feed", WO, store=_feed_store),
    SysfsAttr[Hardware]("irq", CONTROL_MODE, _irq_show, _irq_store),
    SysfsAttr[Hardware]("hang", WO, store=_hang_store),
    SysfsAttr[Hardware]("readers", 0o400, lambda hw: f"{hw.readers}\n"),
)


def create_hold_files(kernel: Kernel, parent: KernfsNode, points: dict[str, HoldPoint]) -> None:
    """``hold/<point>`` and ``delay/<point>`` in ``parent``, for every point."""
    root = kernel.kernfs
    root.create_dir(parent, "hold")
    root.create_dir(parent, "delay")
    for point in points.values():
        _create_point_files(kernel, parent, point)


def _create_point_files(kernel: Kernel, parent: KernfsNode, point: HoldPoint) -> None:
    root = kernel.kernfs
    holds, delays = parent.lookup("hold"), parent.lookup("delay")
    assert holds is not None and delays is not None
    create_file(root, holds, point, _hold_file(point.name))
    create_file(root, delays, point, _delay_file(point.name))


# One declaration per point, shared by the files of every device.
@functools.cache
def _hold_file(name: str) -> SysfsAttr[HoldPoint]:
    return SysfsAttr(name, CONTROL_MODE, HoldPoint.show, _hold_store)


@functools.cache
def _delay_file(name: str) -> SysfsAttr[HoldPoint]:
    return SysfsAttr(name, CONTROL_MODE, _delay_show, _delay_store)


def _point_defined(kernel: Kernel, name: str) -> None:
    """A driver defined a hold point: its files in every hold/ and delay/ directory."""
    top = control_dir(kernel)
    _create_point_files(kernel, top, kernel.hold.points[name])
    devices = top.lookup("devices")
    assert devices is not None
    for dev_name, points in kernel.hold.per_device.items():
        parent = devices.lookup(dev_name)
        if parent is not None:
            _create_point_files(kernel, parent, points[name])


def control_dir(kernel: Kernel) -> KernfsNode:
    return kernel.kernfs.mkdir_p("sys/kernel/debug/fakesys")


def create_control_files(kernel: Kernel) -> None:
    root = kernel.kernfs
    top = control_dir(kernel)
    for attr in KERNEL_FILES:
        create_file(root, top, kernel, attr)
    create_hold_files(kernel, top, kernel.hold.points)
    kernel.hold.on_define.append(lambda name: _point_defined(kernel, name))
    root.create_dir(top, "devices")
    root.create_file(top, "uevents", 0o400, UeventMonitor(kernel))


class UeventMonitor(FileOps):
    """The uevent stream: every event sent after the open, in the format of
    ``udevadm monitor --kernel --property``, one event per read. Blocks when there is none
    (EAGAIN with O_NONBLOCK); pollable."""

    may_block = True
    seekable = False
    BACKLOG = 4096  # events kept per reader; older ones are dropped, as a full socket drops

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def open(self, of: OpenFile) -> None:
        reader = _MonitorReader(collections.deque(maxlen=self.BACKLOG), of)
        of.private = reader
        self.kernel.uevent_listeners.append(reader.listener)
        reader.format = self.format

    def format(self, variables: list[tuple[str, str]]) -> bytes:
        env = dict(variables)
        now = self.kernel.clock.now()
        head = (
            f"KERNEL[{int(now)}.{int(now % 1 * 1e6):06d}] {env['ACTION']:<8} "
            f"{env['DEVPATH']} ({env['SUBSYSTEM']})\n"
        )
        return (head + "".join(f"{k}={v}\n" for k, v in variables) + "\n").encode()

    @staticmethod
    def _reader(of: OpenFile) -> _MonitorReader:
        assert isinstance(of.private, _MonitorReader)
        return of.private

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        reader = self._reader(of)
        while not reader.queue:
            if of.nonblocking:
                raise ErrnoError(errno.EAGAIN)
            await reader.arrived.park()
        event = reader.queue.popleft()
        if len(event) > size:
            reader.queue.appendleft(event[size:])
            return event[:size]
        return event

    def poll(self, of: OpenFile) -> int:
        return select.POLLIN | select.POLLRDNORM if self._reader(of).queue else 0

    async def release(self, of: OpenFile) -> None:
        self.kernel.uevent_listeners.remove(self._reader(of).listener)


class _MonitorReader:
    def __init__(self, queue: collections.deque[bytes], of: OpenFile) -> None:
        self.queue = queue
        self.of = of
        self.arrived = trio.lowlevel.ParkingLot()
        self.format: Callable[[list[tuple[str, str]]], bytes] = lambda variables: b""

    def listener(self, variables: list[tuple[str, str]]) -> None:
        self.queue.append(self.format(variables))
        self.arrived.unpark_all()
        self.of.node.notify()


def add_hardware_controls(kernel: Kernel, name: str, hw: Hardware) -> None:
    """``devices/<name>/``: the hardware of a device, there whether or not it is bound."""
    devices = control_dir(kernel).lookup("devices")
    assert devices is not None
    directory = kernel.kernfs.create_dir(devices, name)
    for attr in HW_FILES:
        create_file(kernel.kernfs, directory, hw, attr)
    create_hold_files(kernel, directory, kernel.hold.device_points(name))


async def remove_hardware_controls(kernel: Kernel, name: str) -> None:
    """The hardware is gone (unplugged): its control directory goes too."""
    devices = control_dir(kernel).lookup("devices")
    node = devices.lookup(name) if devices is not None else None
    if node is not None:
        await kernel.kernfs.remove(node)
    kernel.hold.forget_device(name)
