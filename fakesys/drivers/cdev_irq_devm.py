"""cdev_irq_devm: an interrupt that outlives remove() (the devres article, "When does the use
of the devres API harm?", its tasklet half, buggy).

The device's interrupt schedules a tasklet, and both the tasklet and what it works on are in
devm memory. remove() kills the tasklet, but the IRQ was requested with devm_request_irq(), so
devres frees it only after remove(), and before that it frees nothing in between: an
interrupt in that window (``hold/unbind_devres``) schedules the tasklet again, which then runs
after its memory is gone. The files are reference counted and behave as cdev_refcounted's.

The fix is cdev_irq_fixed.py: ``diff cdev_irq_devm.py cdev_irq_fixed.py``.
"""

from __future__ import annotations

from fakesys.drivers.lifetime import (
    POLLERR,
    POLLHUP,
    LifetimeRx,
    lifetime_class,
    lifetime_node_add,
    lifetime_node_del,
    lifetime_rx_copy,
    lifetime_rx_init,
    lifetime_rx_poll,
    lifetime_rx_wait,
)
from fakesys.linux import (
    ENODEV,
    IRQ_HANDLED,
    Cdev,
    Device,
    ErrnoError,
    File,
    FileOperations,
    Inode,
    IrqLine,
    Kref,
    PlatformDevice,
    PlatformDriver,
    Ptr,
    Struct,
    Tasklet,
    container_of,
    devm_kzalloc,
    devm_request_irq,
    hw_rx_read,
    kfifo_in,
    kfree,
    kref_get,
    kref_init,
    kref_put,
    kzalloc,
    module_platform_driver,
    platform_get_drvdata,
    platform_get_irq,
    platform_set_drvdata,
    tasklet_kill,
    tasklet_schedule,
    tasklet_setup,
    this_module,
    u64,
    wake_up,
)

THIS_MODULE = this_module()
DRIVER_NAME = "cdev_irq_devm"
irqdev_nodes = lifetime_class("irqdevm")


class Irqdev(Struct, var="priv"):
    """struct irqdev: one bound device, reference counted."""

    ref: Kref
    cdev: Cdev
    rx: LifetimeRx
    dev: Device
    gone: bool


class IrqdevIrq(Struct, name="irqdev_irq", var="irqd"):
    """What the interrupt and its tasklet use: devm-allocated in probe."""

    tasklet: Tasklet
    priv: Ptr[Irqdev]
    interrupts: u64


def irqdev_tasklet(t: Tasklet) -> None:
    irqd = container_of(t, IrqdevIrq, "tasklet")
    rx = irqd.priv.rx
    kfifo_in(rx.fifo, hw_rx_read(rx.hw))
    wake_up(rx.wait)


def irqdev_irq(irq: IrqLine, dev_id: object) -> int:
    assert isinstance(dev_id, IrqdevIrq)
    dev_id.interrupts += 1
    tasklet_schedule(dev_id.tasklet)
    return IRQ_HANDLED


def to_priv(file: File) -> Irqdev:
    priv = file.private_data
    assert isinstance(priv, Irqdev)
    return priv


def irqdev_free(ref: Kref) -> None:
    kfree(container_of(ref, Irqdev, "ref"))


async def irqdev_open(inode: Inode, file: File) -> None:
    priv = container_of(inode.i_cdev, Irqdev, "cdev")
    kref_get(priv.ref)
    file.private_data = priv


async def irqdev_read(file: File, count: int) -> bytes:
    priv = to_priv(file)
    await lifetime_rx_wait(priv.rx, file, lambda: priv.gone)
    if priv.gone:
        raise ErrnoError(ENODEV)
    return await lifetime_rx_copy(priv.rx, count)


async def irqdev_write(file: File, data: bytes) -> int:
    if to_priv(file).gone:
        raise ErrnoError(ENODEV)
    return len(data)


def irqdev_poll(file: File) -> int:
    priv = to_priv(file)
    if priv.gone:
        return POLLERR | POLLHUP
    return lifetime_rx_poll(priv.rx, file)


async def irqdev_release(inode: Inode, file: File) -> None:
    kref_put(to_priv(file).ref, irqdev_free)


irqdev_fops = FileOperations(
    owner=THIS_MODULE,
    open=irqdev_open,
    read=irqdev_read,
    write=irqdev_write,
    poll=irqdev_poll,
    release=irqdev_release,
)


async def irqdev_probe(pdev: PlatformDevice) -> None:
    priv = kzalloc(Irqdev)
    kref_init(priv.ref)
    lifetime_rx_init(priv.rx, pdev)
    irqd = devm_kzalloc(pdev, IrqdevIrq)
    irqd.priv = priv
    tasklet_setup(irqd.tasklet, irqdev_tasklet)
    devm_request_irq(pdev, platform_get_irq(pdev, 0), irqdev_irq, 0, DRIVER_NAME, irqd)
    try:
        priv.dev = await lifetime_node_add(irqdev_nodes, pdev, priv.cdev, irqdev_fops)
    except ErrnoError:
        kref_put(priv.ref, irqdev_free)
        raise
    platform_set_drvdata(pdev, irqd)


async def irqdev_remove(pdev: PlatformDevice) -> None:
    irqd = platform_get_drvdata(pdev)
    assert isinstance(irqd, IrqdevIrq)
    priv = irqd.priv
    await lifetime_node_del(irqdev_nodes, priv.cdev, priv.dev)
    await tasklet_kill(irqd.tasklet)
    priv.gone = True
    wake_up(priv.rx.wait)
    kref_put(priv.ref, irqdev_free)


irqdev_driver = PlatformDriver(name=DRIVER_NAME, probe=irqdev_probe, remove=irqdev_remove)
module_platform_driver(irqdev_driver)
