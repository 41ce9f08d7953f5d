"""Deferred probing (drivers/base/dd.c), and the supplier check behind most of it.

A probe that returns -EPROBE_DEFER puts its device on the pending list. Every successful bind
(driver_bound()) runs driver_deferred_probe_trigger(): the pending list moves to the active
one and the deferred-probe work is queued, which tries each active device again with
bus_probe_device(); a device that defers again goes back on the pending list. A trigger that
happened while a probe was running re-triggers when that probe defers, so no bind is missed.
``/sys/kernel/debug/devices_deferred`` lists the pending devices with the reason
dev_err_probe() recorded, in the kernel's format (``<dev>\\t<driver>: <reason>``).

A device's suppliers (``suppliers = [...]`` in a scenario: the device links fw_devlink makes
from the firmware description) must be bound before the device probes; until then
really_probe() defers it without calling the driver, as device_links_check_suppliers() does
(drivers/base/core.c).

Limitations: deferred probing is on from boot (the kernel turns it on at late_initcall), with
no deferred_probe_timeout. Device links are only that check at probe: there is no
``/sys/class/devlink``, no ``supplier:``/``consumer:`` links, and unbinding a supplier does not
unbind its consumers. A supplier is named by device name, where the kernel prints a firmware
node path.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from .core import get_device, put_device
from .printk import KERN_DEBUG, KERN_ERR
from .sched import UNBOUND_WORKER, run_as_kernel_thread
from .stacktrace import enter, frames
from .workqueue import WORKER_FRAMES

if TYPE_CHECKING:
    from .core import Device
    from .kernel import Kernel

EPROBE_DEFER = 517  # include/linux/errno.h: kernel-internal, never seen by user space

DEFERRED_PROBE_FRAMES = WORKER_FRAMES + frames("deferred_probe_work_func")


def errname(err: int) -> str:
    """What ``%pe`` prints for a negative errno (lib/errname.c): ``-ENOMEM``."""
    if err == -EPROBE_DEFER:
        return "-EPROBE_DEFER"
    return f"-{errno.errorcode.get(-err, str(-err))}"


def dev_err_probe(dev: Device, err: int, message: str) -> int:
    """dev_err_probe(): log a probe error and return ``err``. For -EPROBE_DEFER the message
    becomes the device's reason in ``devices_deferred`` and is logged at debug level only;
    -ENOMEM is not logged at all."""
    if err == -EPROBE_DEFER:
        dev.deferred_probe_reason = f"{dev.driver_string()}: {message}\n"
        dev.printk(KERN_DEBUG, f"error {errname(err)}: {message}")
    elif err != -errno.ENOMEM:
        dev.printk(KERN_ERR, f"error {errname(err)}: {message}")
    return err


def _find_device(kernel: Kernel, name: str) -> Device | None:
    for bus in kernel.buses.values():
        dev = bus.find_device_by_name(name)
        if dev is not None:
            return dev
    return None


def device_links_check_suppliers(dev: Device) -> int:
    """0 if every supplier is bound, else -EPROBE_DEFER with the reason recorded."""
    for name in dev.suppliers:
        supplier = _find_device(dev.kernel, name)
        if supplier is None:
            return dev_err_probe(dev, -EPROBE_DEFER, f"wait for supplier {name}")
        drv = supplier.driver
        if drv is None or supplier not in drv.devices:
            return dev_err_probe(dev, -EPROBE_DEFER, f"supplier {name} not ready")
    return 0


class DeferredProbe:
    """deferred_probe_pending_list, deferred_probe_active_list and their work."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.pending: list[Device] = []
        self.active: list[Device] = []
        #: deferred_trigger_count: lets a probe see that a trigger happened while it ran.
        self.trigger_count = 0
        self.work_queued = False

    def add(self, dev: Device) -> None:
        """driver_deferred_probe_add()."""
        if dev not in self.pending and dev not in self.active:
            dev.printk(KERN_DEBUG, "Added to deferred list")
            self.pending.append(dev)

    def delete(self, dev: Device) -> None:
        """driver_deferred_probe_del(): bound or gone."""
        for queue in (self.pending, self.active):
            if dev in queue:
                dev.printk(KERN_DEBUG, "Removed from deferred list")
                queue.remove(dev)
        dev.deferred_probe_reason = None

    def trigger(self) -> None:
        """driver_deferred_probe_trigger(): retry every pending device, from a work item."""
        self.trigger_count += 1
        self.active += self.pending
        self.pending.clear()
        if self.active and not self.work_queued:
            self.work_queued = True
            self.kernel.spawn(self._work)

    async def _work(self) -> None:
        """deferred_probe_work_func()."""
        # driver_deferred_probe_trigger() queues it on system_unbound_wq
        run_as_kernel_thread(UNBOUND_WORKER, ("events_unbound", "deferred_probe_work_func"))
        try:
            with enter(DEFERRED_PROBE_FRAMES):
                while self.active:
                    dev = self.active.pop(0)
                    get_device(dev)
                    dev.deferred_probe_reason = None
                    try:
                        dev.printk(KERN_DEBUG, "Retrying from deferred list")
                        if dev.bus is not None:
                            await dev.bus.probe_device(dev)
                    finally:
                        put_device(dev)
        finally:
            self.work_queued = False

    def show(self) -> str:
        """deferred_devs_show()."""
        return "".join(
            f"{dev.name}\t{dev.deferred_probe_reason or chr(10)}" for dev in self.pending
        )
