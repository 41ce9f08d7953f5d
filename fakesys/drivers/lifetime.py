"""The lifetime class: the character-device nodes of the lifetime drivers, as ``misc`` is the
core of small character drivers.

A driver file declares its nodes at the top with :func:`lifetime_class`, which reads the
module parameters ``node`` (the name prefix: ``devm`` gives ``/dev/devm0``, ``dri/card`` gives
``/dev/dri/card0``), ``class`` (``lifetime``) and ``mode`` (of the node, 0600 unless given;
a mode other than 0600 is what the class's devnode() returns, hence ``DEVMODE`` in the
uevent), and which claims a range of numbers at module init and gives it back at exit. Its
probe then adds a node for a bound device with :func:`lifetime_node_add`, its remove takes it
away with :func:`lifetime_node_del`.

The receive path the drivers share, from the hardware's interrupt into a FIFO readers wait
on, is here too, as inline helpers (they have no frame of their own: what they touch is
reported in the driver's function that called them).
"""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass, field

from fakesys.linux import (
    EAGAIN,
    IRQ_HANDLED,
    IRQ_NONE,
    MAJOR,
    MINOR,
    MKDEV,
    Cdev,
    Device,
    ErrnoError,
    File,
    FileOperations,
    Ida,
    IrqLine,
    Kfifo,
    Struct,
    WaitQueueHead,
    alloc_chrdev_region,
    cdev_device_add,
    cdev_device_del,
    cdev_init,
    class_get,
    dev_driver_string,
    device_initialize,
    free_irq,
    hold_point,
    hw_rx_read,
    ida_alloc,
    ida_free,
    kfifo_alloc,
    kfifo_in,
    kfifo_is_empty,
    kfifo_out,
    module_exit,
    module_init,
    module_param,
    platform_get_irq,
    poll_wait,
    put_device,
    register_chrdev_region,
    request_irq,
    unregister_chrdev_region,
    wait_event_interruptible,
    wake_up,
)

POLLIN, POLLRDNORM = select.POLLIN, select.POLLRDNORM
POLLOUT, POLLWRNORM = select.POLLOUT, select.POLLWRNORM
POLLERR, POLLHUP = select.POLLERR, select.POLLHUP
LIFETIME_MINORS = 256
RX_FIFO_SIZE = 64 * 1024


@dataclass
class LifetimeClass:
    """The nodes of one module: their class, name prefix, mode and numbers."""

    node: str
    class_name: str
    mode: int
    major: int = 0
    minors: Ida = field(default_factory=Ida)

    async def init(self) -> None:
        """Claim the numbers: a fixed major if the module was given one, else a dynamic one."""
        if self.major:
            register_chrdev_region(MKDEV(self.major, 0), LIFETIME_MINORS, self.basename)
        else:
            self.major = MAJOR(alloc_chrdev_region(0, LIFETIME_MINORS, self.basename))

    async def exit(self) -> None:
        unregister_chrdev_region(MKDEV(self.major, 0), LIFETIME_MINORS)

    @property
    def basename(self) -> str:
        return self.node.rsplit("/", 1)[-1]


def lifetime_class(node: str, class_name: str = "lifetime", mode: int = 0o600,
                   major: int = 0) -> LifetimeClass:  # fmt: skip
    """At the top of a driver file: its nodes, with the module parameters ``node``, ``class``,
    ``mode`` and ``major`` overriding these defaults; claimed at init, given back at exit."""
    nodes = LifetimeClass(
        module_param("node", node),
        module_param("class", class_name),
        module_param("mode", mode),
        module_param("major", major),
    )
    module_init(nodes.init)
    module_exit(nodes.exit)
    return nodes


async def lifetime_node_add(
    nodes: LifetimeClass,
    parent: Device,
    cdev: Cdev,
    fops: FileOperations,
    devtype: str | None = None,
) -> Device:
    """A class device below ``parent`` with the next free minor, its node in /dev, and
    ``cdev`` behind it. A failure gives the minor back and leaves nothing behind."""
    minor = ida_alloc(nodes.minors)
    dev = device_initialize(
        f"{nodes.basename}{minor}",
        parent=parent,
        cls=class_get(nodes.class_name),
        devt=MKDEV(nodes.major, minor),
        devtype=devtype,
    )
    if "/" in nodes.node:
        dev.devnode = f"{nodes.node}{minor}"
    if nodes.mode != 0o600:
        dev.devnode_mode = nodes.mode
    cdev_init(cdev, fops)
    try:
        await cdev_device_add(cdev, dev)
    except ErrnoError:
        put_device(dev)
        ida_free(nodes.minors, minor)
        raise
    return dev


async def lifetime_node_del(nodes: LifetimeClass, cdev: Cdev, dev: Device) -> None:
    """The node goes: no new opens. Files already open keep calling the driver."""
    devt = dev.devt
    await cdev_device_del(cdev, dev)
    put_device(dev)
    if devt is not None:
        ida_free(nodes.minors, MINOR(devt))


async def lifetime_device_add(
    nodes: LifetimeClass,
    pdev: Device,
    cdev: Cdev,
    rx: LifetimeRx,
    fops: FileOperations,
    devtype: str | None = None,
) -> Device:
    """What a lifetime driver's probe does for its device: the receive path (the device's
    interrupt, requested in the driver's name) and the node. A failure undoes both."""
    lifetime_rx_init(rx, pdev)
    irq = platform_get_irq(pdev, 0)
    request_irq(irq, lifetime_rx_irq, 0, dev_driver_string(pdev), rx)
    try:
        return await lifetime_node_add(nodes, pdev, cdev, fops, devtype)
    except ErrnoError:
        free_irq(irq, rx)
        raise


async def lifetime_device_del(
    nodes: LifetimeClass, pdev: Device, cdev: Cdev, rx: LifetimeRx, dev: Device
) -> None:
    """What its remove does: the node goes, then the interrupt is freed."""
    await lifetime_node_del(nodes, cdev, dev)
    free_irq(platform_get_irq(pdev, 0), rx)


# -- the receive path: interrupt, FIFO, readers --


class LifetimeRx(Struct, var="rx"):
    """What data from the hardware goes through: a FIFO and the queue readers sleep on."""

    fifo: Kfifo
    wait: WaitQueueHead
    hw: Device


def lifetime_rx_init(rx: LifetimeRx, hw: Device) -> None:
    kfifo_alloc(rx.fifo, RX_FIFO_SIZE)
    rx.hw = hw


def lifetime_rx_irq(irq: IrqLine, dev_id: object) -> int:
    """The receive interrupt (``dev_id`` is the receive path): move what the hardware has
    into the FIFO and wake the readers."""
    assert isinstance(dev_id, LifetimeRx)
    data = hw_rx_read(dev_id.hw)
    if not data:
        return IRQ_NONE
    kfifo_in(dev_id.fifo, data)
    wake_up(dev_id.wait)
    return IRQ_HANDLED


async def lifetime_rx_wait(rx: LifetimeRx, file: File, stop: Callable[[], bool]) -> None:
    """Until there is data or ``stop()`` (EAGAIN at once with O_NONBLOCK)."""
    if kfifo_is_empty(rx.fifo) and not stop():
        if file.nonblocking:
            raise ErrnoError(EAGAIN)
        await wait_event_interruptible(rx.wait, lambda: not kfifo_is_empty(rx.fifo) or stop())


async def lifetime_rx_copy(rx: LifetimeRx, count: int) -> bytes:
    """copy_to_user() of what is there, after the ``read`` hold point."""
    await hold_point("read", rx.hw)
    return kfifo_out(rx.fifo, count)


def lifetime_rx_poll(rx: LifetimeRx, file: File) -> int:
    """The poll mask of the receive path: always writable, readable with data."""
    poll_wait(file, rx.wait)
    mask = POLLOUT | POLLWRNORM
    if not kfifo_is_empty(rx.fifo):
        mask |= POLLIN | POLLRDNORM
    return mask
