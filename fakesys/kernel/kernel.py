"""The simulated kernel: its clock, log, taint, heap, and the driver core's top directories.

:meth:`Kernel.boot` does what driver_init() and the early initcalls do: the sysfs skeleton,
the platform bus with its root device, the PCI bus with its host bridge, and the files outside
sysfs that fakesys serves (``/dev/kmsg``, ``/proc/sys/kernel/tainted``, ``/proc/modules``).
"""

from __future__ import annotations

import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable

import trio

from ..kernfs import Attribute, KernfsNode, KernfsRoot
from .bus import BusType
from .calls import set_current_kernel
from .char_dev import CharDevices, DevtmpfsMirror
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
from .module import MODULE_LOAD_OFFSET, MODULES_VADDR, Module
from .module_procfs import ProcModules
from .panic import Taint
from .pci import PciBus, pci_register_host_bridge
from .platform import PlatformBus
from .printk import KERN_NOTICE, KERN_WARNING, DevKmsg, PrintkBuffer
from .sched import current, print_worker_info
from .slab import Slab
from .stacktrace import stack
from .timer import TimerList
from .workqueue import Clock, DelayedWork

log = logging.getLogger(__name__)

UTS_RELEASE = "6.18.0-fakesys"
# scripts/mkcompile_h: the build number, the options, the build time.
UTS_VERSION = "#1 SMP PREEMPT_DYNAMIC Sun Nov 30 12:00:00 UTC 2025"
LINUX_COMPILE_BY = "fakesys"
LINUX_COMPILE_HOST = "fakesys"
LINUX_COMPILER = "gcc (GCC) 14.2.0, GNU ld (GNU Binutils) 2.44"
# init/version-timestamp.c
LINUX_BANNER = (
    f"Linux version {UTS_RELEASE} ({LINUX_COMPILE_BY}@{LINUX_COMPILE_HOST}) "
    f"({LINUX_COMPILER}) {UTS_VERSION}"
)
# preempt_model_str() (kernel/sched/core.c) of a PREEMPT_DYNAMIC kernel booted in the
# distributions' default mode, printed on dump_stack()'s CPU line since v6.15.
PREEMPT_MODEL = "PREEMPT(voluntary)"
HARDWARE_NAME = "fakesys virtual machine, BIOS 0.1.0"


class Kernel:
    def __init__(self) -> None:
        self.clock = Clock()
        self.log = PrintkBuffer(self.clock.now_ns)
        self.kernfs = KernfsRoot(warn=self._kernfs_warning, duplicate=self._sysfs_warn_dup)
        self.taint = Taint()
        #: Oopses so far: die_counter of arch/x86/kernel/dumpstack.c, the ``[#n]``.
        self.die_counter = 0
        #: The name of the module rmmod removed last (kernel/module/main.c).
        self.last_unloaded_module = ""
        self.lockdep = Lockdep(self)
        self.kasan = Kasan(
            self.log, self.taint, self.dump_stack_header, self.lockdep.debug_locks_off
        )
        self.slab = Slab(self.kasan)
        self.devcoredump = Devcoredump(self)
        self.uevent_seqnum = 0
        self.uevent_helper = ""
        self.uevent_listeners: list[Callable[[list[tuple[str, str]]], None]] = []
        #: Sends an event (action, DEVPATH, variables without SEQNUM) on netlink; returns the
        #: SEQNUM the receiving kernel gave it, or None (kobject_uevent_net_broadcast()).
        self.uevent_net_broadcast: (
            Callable[[str, str, list[tuple[str, str]]], int | None] | None
        ) = None
        self.buses: dict[str, BusType] = {}
        self.classes: dict[str, Class] = {}
        self.modules: dict[str, Module] = {}
        self.char_devices = CharDevices()
        #: The next free address of the module area (execmem_alloc()).
        self.module_area_next = MODULES_VADDR + MODULE_LOAD_OFFSET
        self.devtmpfs_mirrors: list[DevtmpfsMirror] = []
        self.hold = HoldPoints(self.clock)
        self.deferred_probe = DeferredProbe(self)
        #: Pending timers and delayed work, for advance_clock to wait for what fell due.
        self.timers: weakref.WeakSet[DelayedWork | TimerList] = weakref.WeakSet()
        #: fail_function: a driver function → the errno it returns instead of running.
        self.fail_function: dict[Callable[..., object], int] = {}
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
        for timer in list(self.timers):
            if timer.pending and timer.deadline <= now:
                await timer.wait_idle()

    def spawn(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn`` as deferred kernel work (a softirq, a work item).

        It starts from an empty context: a kernel thread inherits neither the caller's
        identity nor its held locks nor its stack, as trio's copy of the spawner's context
        would otherwise give it.
        """
        if self.nursery is None:
            raise RuntimeError("deferred work needs Kernel.nursery")

        async def guarded() -> None:
            set_current_kernel(self)
            # An engine bug in deferred work must not end the nursery, and with it the mount.
            try:
                await fn()
            except Exception:
                log.exception("deferred kernel work failed")
            finally:
                self.deferred_tasks -= 1

        contextvars.Context().run(self.nursery.start_soon, guarded)
        self.deferred_tasks += 1

    def _sysfs_warn_dup(self, parent: KernfsNode, name: str) -> None:
        """sysfs_warn_dup() (fs/sysfs/dir.c): the path below /sys, then the stack."""
        path = parent.path()
        if not path.startswith("/sys/") and path != "/sys":
            return
        self.log.emit(
            KERN_WARNING,
            f"sysfs: cannot create duplicate filename '{path.removeprefix('/sys')}/{name}'",
        )
        for line in [*self.dump_stack_header(), "Call Trace:", " <TASK>"]:
            self.log.emit(KERN_WARNING, line)
        for frame in stack("sysfs_warn_dup", "dump_stack_lvl"):
            self.log.emit(KERN_WARNING, f" {frame}")
        self.log.emit(KERN_WARNING, " </TASK>")

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
        return lines + print_worker_info(task)

    async def boot(self, root_devices: bool = True) -> None:
        """Build the machine; from now on the calling task runs as this kernel's. With
        ``root_devices`` False, the platform bus device and the PCI host bridge are left for
        later (:meth:`add_root_devices`): a recorded machine has its own."""
        set_current_kernel(self)
        # start_kernel(): the banner is the first message, pr_notice("%s", linux_banner).
        self.log.emit(KERN_NOTICE, LINUX_BANNER)
        root = self.kernfs
        kmsg = root.create_file(self.dev_kn, "kmsg", 0o644, DevKmsg(self.log))
        self.log.on_record.append(kmsg.notify)
        root.create_file(self.proc_sys_kernel_kn, "tainted", 0o644, self.taint.proc_attribute())
        osrelease = Attribute(lambda: f"{UTS_RELEASE}\n", sysfs=False)
        root.create_file(self.proc_sys_kernel_kn, "osrelease", 0o444, osrelease)
        # proc_version_show(): the banner's format with the running kernel's uname fields
        version = Attribute(lambda: f"{LINUX_BANNER}\n", sysfs=False)
        root.create_file(root.mkdir_p("proc"), "version", 0o444, version)
        root.create_file(root.mkdir_p("proc"), "modules", 0o444, ProcModules(self))
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

    async def add_root_devices(self, buses: Iterable[str]) -> None:
        """Add the root devices of the built-in ``buses`` named that are not in sysfs yet:
        ``/sys/devices/platform``, and the PCI host bridge with its root bus."""
        wanted = set(buses)
        if "platform" in wanted and not self.platform_bus_device.registered:
            await device_add(self.platform_bus_device)
        if "pci" in wanted and not self.pci_host_bridge.registered:
            await pci_register_host_bridge(self)

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
