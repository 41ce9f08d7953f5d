"""The simulated kernel: its clock, log, taint, heap, and the driver core's top directories.

:meth:`Kernel.boot` does what driver_init() and the early initcalls do: the sysfs skeleton,
the platform bus with its root device, the PCI bus with its host bridge, and the files outside
sysfs that fakesys serves (``/dev/kmsg``, ``/proc/sys/kernel/tainted``).
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

import trio

from ..kernfs import Attribute, KernfsNode, KernfsRoot
from .bus import BusType
from .char_dev import Cdev
from .class_ import Class
from .control import create_control_files
from .core import Device, device_add
from .deferred_probe import DeferredProbe
from .devcoredump import Devcoredump
from .hold import HoldPoints
from .hotplug import HotplugBus
from .kasan import Kasan
from .ksysfs import ksysfs_init
from .lockdep import Lockdep
from .module import Module
from .panic import Taint
from .pci import PciBus
from .platform import PlatformBus
from .printk import KERN_INFO, KERN_WARNING, DevKmsg, PrintkBuffer
from .sched import current
from .slab import Slab
from .workqueue import Clock, DelayedWork

log = logging.getLogger(__name__)

UTS_RELEASE = "6.18.0-fakesys"
UTS_VERSION = "#1 SMP PREEMPT_DYNAMIC"
# preempt_model_str() (kernel/sched/core.c) of a PREEMPT_DYNAMIC kernel booted in the
# distributions' default mode, printed on dump_stack()'s CPU line since v6.15.
PREEMPT_MODEL = "PREEMPT(voluntary)"
HARDWARE_NAME = "fakesys virtual machine, BIOS 0.1.0"


class Kernel:
    def __init__(self) -> None:
        self.clock = Clock()
        self.log = PrintkBuffer(self.clock.now_ns)
        self.kernfs = KernfsRoot(warn=self._kernfs_warning)
        self.taint = Taint()
        self.lockdep = Lockdep(self)
        self.kasan = Kasan(
            self.log, self.taint, self.dump_stack_header, self.lockdep.debug_locks_off
        )
        self.slab = Slab(self.kasan)
        self.devcoredump = Devcoredump(self)
        self.uevent_seqnum = 0
        self.uevent_helper = ""
        self.uevent_listeners: list[Callable[[list[tuple[str, str]]], None]] = []
        self.buses: dict[str, BusType] = {}
        self.classes: dict[str, Class] = {}
        self.modules: dict[str, Module] = {}
        self.chrdevs: dict[int, str] = {}
        self.cdev_map: dict[tuple[int, int], Cdev] = {}
        self.hold = HoldPoints(self.clock)
        self.deferred_probe = DeferredProbe(self)
        self.delayed_works: weakref.WeakSet[DelayedWork] = weakref.WeakSet()
        #: Serializes driver lookups with driver unregistration (the driver_lock proposed in
        #: the 2002 driverfs discussion).
        self.driver_lock = trio.Lock()
        #: Where deferred work (tasklets, workqueues, timers) runs; set by whoever runs the
        #: kernel (the daemon, a test).
        self.nursery: trio.Nursery | None = None
        #: How many tasks of deferred work are alive (sleeping timers included): what a
        #: leak of cancelled work would show.
        self.deferred_tasks: int = 0
        #: Loads a module by name (init_module); set by the scenario, which knows the modules.
        self.module_loader: Callable[[str], Awaitable[None]] | None = None
        mk = self.kernfs.mkdir_p
        self.devices_kn = mk("sys/devices")
        self.bus_kn = mk("sys/bus")
        self.class_kn = mk("sys/class")
        self.module_kn = mk("sys/module")
        self.dev_char_kn = mk("sys/dev/char")
        self.dev_block_kn = mk("sys/dev/block")
        self.sys_kernel_kn = mk("sys/kernel")
        self.dev_kn = mk("dev")
        self.proc_sys_kernel_kn = mk("proc/sys/kernel")
        for path in ("sys/devices/system", "sys/devices/virtual", "sys/firmware", "sys/fs"):
            mk(path)
        self.platform_bus_device = Device(self, "platform")
        self.pci_host_bridge = Device(self, "pci0000:00")

    async def settle_due_work(self) -> None:
        """Wait until the delayed work whose deadline has passed has run."""
        now = self.clock.now()
        for work in list(self.delayed_works):
            if work.pending and work.deadline <= now:
                await work.wait_idle()

    def spawn(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn`` as deferred kernel work (a softirq, a work item).

        It starts from an empty context: a kernel thread inherits neither the caller's
        identity nor its held locks nor its stack, as trio's copy of the spawner's context
        would otherwise give it.
        """
        if self.nursery is None:
            raise RuntimeError("deferred work needs Kernel.nursery")

        async def guarded() -> None:
            # An engine bug in deferred work must not end the nursery, and with it the mount.
            try:
                await fn()
            except Exception:
                log.exception("deferred kernel work failed")
            finally:
                self.deferred_tasks -= 1

        contextvars.Context().run(self.nursery.start_soon, guarded)
        self.deferred_tasks += 1

    def _kernfs_warning(self, message: str) -> None:
        self.log.emit(KERN_WARNING, message)

    @property
    def uname(self) -> str:
        """The release and build, as in the first line of reports."""
        return f"{UTS_RELEASE} {UTS_VERSION.split(' ', maxsplit=1)[0]}"

    def dump_stack_header(self) -> list[str]:
        """The lines dump_stack() prints before the trace (lib/dump_stack.c)."""
        task = current()
        lines = [
            f"CPU: 0 UID: {task.uid} PID: {task.pid} Comm: {task.comm[:20]} "
            f"{self.taint.print_tainted()} {self.uname} {PREEMPT_MODEL} "
        ]
        if self.taint.mask:
            lines.append(f"Tainted: {self.taint.print_tainted_verbose()}")
        lines.append(f"Hardware name: {HARDWARE_NAME}")
        return lines

    async def boot(self, root_devices: bool = True) -> None:
        """Boot; with ``root_devices`` False, the platform bus device and the PCI host bridge
        are left for later (:meth:`add_root_devices`): a recorded machine has its own."""
        root = self.kernfs
        kmsg = root.create_file(self.dev_kn, "kmsg", 0o644, DevKmsg(self.log))
        self.log.on_record.append(kmsg.notify)
        root.create_file(self.proc_sys_kernel_kn, "tainted", 0o644, self.taint.proc_attribute())
        osrelease = Attribute(lambda: f"{UTS_RELEASE}\n", sysfs=False)
        root.create_file(self.proc_sys_kernel_kn, "osrelease", 0o444, osrelease)
        ksysfs_init(self)
        deferred = Attribute(self.deferred_probe.show, sysfs=False)
        root.create_file(root.mkdir_p("sys/kernel/debug"), "devices_deferred", 0o444, deferred)
        create_control_files(self)
        self.devcoredump.cls.register()
        PlatformBus(self).register()
        PciBus(self).register()
        HotplugBus(self).register()
        if root_devices:
            await self.add_root_devices(("platform", "pci"))
        self.log.emit(KERN_INFO, f"Linux version {UTS_RELEASE} (fakesys) {UTS_VERSION}")

    async def add_root_devices(self, buses: Iterable[str]) -> None:
        """Add the root devices of the built-in ``buses`` that are not in sysfs yet:
        ``/sys/devices/platform`` and ``/sys/devices/pci0000:00``."""
        roots = {"platform": self.platform_bus_device, "pci": self.pci_host_bridge}
        for bus in buses:
            dev = roots.get(bus)
            if dev is not None and not dev.registered:
                await device_add(dev)

    def _sys_dev_dir(self, dev: Device) -> KernfsNode:
        """device_to_dev_kobj(): ``/sys/dev/block`` for the block class, else ``/sys/dev/char``."""
        block = dev.cls is not None and dev.cls.name == "block"
        return self.dev_block_kn if block else self.dev_char_kn

    def add_sys_dev_entry(self, dev: Device) -> None:
        """``/sys/dev/{char,block}/<major>:<minor>`` (device_create_sys_dev_entry())."""
        assert dev.devt is not None and dev.kn is not None
        self.kernfs.create_link(self._sys_dev_dir(dev), f"{dev.devt[0]}:{dev.devt[1]}", dev.kn)

    async def remove_sys_dev_entry(self, dev: Device) -> None:
        assert dev.devt is not None
        kn = self._sys_dev_dir(dev).lookup(f"{dev.devt[0]}:{dev.devt[1]}")
        if kn is not None:
            await self.kernfs.remove(kn)

    def lookup(self, path: str) -> KernfsNode | None:
        return self.kernfs.root.walk(path)
