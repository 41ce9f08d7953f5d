"""fakeserial: a USB-serial-like adapter on the hotplug bus (drivers/usb/serial/usb-serial.c,
with the tty layer's hangup).

Each adapter has a tty node (``/dev/ttyUSB<n>``, class ``tty``, major 188). Data the adapter
receives (``feed``) is read from it. When the adapter goes (``del_device``, or unbind),
usb_serial_disconnect() hangs the tty up before the port goes away, and a file still open
sees what the tty layer gives a hung-up tty (drivers/tty/tty_io.c, hung_up_tty_fops): reads
return end of file, writes fail with EIO, poll reports everything. The port is reference
counted by the open files (tty_port), so the last close frees it; a new open of a stale
node fails with ENXIO, as the number is gone.
"""

from __future__ import annotations

from fakesys.drivers.lifetime import (
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLOUT,
    POLLRDNORM,
    POLLWRNORM,
    LifetimeRx,
    lifetime_class,
    lifetime_device_add,
    lifetime_device_del,
    lifetime_rx_copy,
    lifetime_rx_poll,
    lifetime_rx_wait,
)
from fakesys.linux import (
    EIO,
    Cdev,
    Device,
    ErrnoError,
    File,
    FileOperations,
    HotplugDevice,
    HotplugDriver,
    Inode,
    Kref,
    Struct,
    container_of,
    dev_get_drvdata,
    dev_set_drvdata,
    kfree,
    kref_get,
    kref_init,
    kref_put,
    kzalloc,
    module_driver,
    this_module,
    u64,
    wake_up,
)

THIS_MODULE = this_module()
DRIVER_NAME = "fakeserial"
USB_SERIAL_TTY_MAJOR = 188
serial_nodes = lifetime_class("ttyUSB", "tty", 0o660, USB_SERIAL_TTY_MAJOR)
HUNG_UP_POLL = POLLIN | POLLOUT | POLLERR | POLLHUP | POLLRDNORM | POLLWRNORM


class SerialPort(Struct, name="usb_serial_port", var="port"):
    """struct usb_serial_port, with its tty_port's reference count."""

    ref: Kref
    cdev: Cdev
    rx: LifetimeRx
    dev: Device
    hung_up: bool
    tx_bytes: u64


def serial_port_release(ref: Kref) -> None:
    kfree(container_of(ref, SerialPort, "ref"))


def to_port(file: File) -> SerialPort:
    port = file.private_data
    assert isinstance(port, SerialPort)
    return port


async def serial_open(inode: Inode, file: File) -> None:
    port = container_of(inode.i_cdev, SerialPort, "cdev")
    kref_get(port.ref)
    file.private_data = port


async def serial_read(file: File, count: int) -> bytes:
    port = to_port(file)
    await lifetime_rx_wait(port.rx, file, lambda: port.hung_up)
    if port.hung_up:
        return b""  # hung_up_tty_read()
    return await lifetime_rx_copy(port.rx, count)


async def serial_write(file: File, data: bytes) -> int:
    port = to_port(file)
    if port.hung_up:
        raise ErrnoError(EIO)  # hung_up_tty_write()
    port.tx_bytes += len(data)
    return len(data)


def serial_poll(file: File) -> int:
    port = to_port(file)
    if port.hung_up:
        return HUNG_UP_POLL
    return lifetime_rx_poll(port.rx, file)


async def serial_close(inode: Inode, file: File) -> None:
    kref_put(to_port(file).ref, serial_port_release)


serial_fops = FileOperations(
    owner=THIS_MODULE,
    open=serial_open,
    read=serial_read,
    write=serial_write,
    poll=serial_poll,
    release=serial_close,
)


async def serial_probe(dev: HotplugDevice) -> None:
    port = kzalloc(SerialPort)
    kref_init(port.ref)
    try:
        port.dev = await lifetime_device_add(serial_nodes, dev, port.cdev, port.rx, serial_fops)
    except ErrnoError:
        kref_put(port.ref, serial_port_release)
        raise
    dev_set_drvdata(dev, port)


async def serial_disconnect(dev: HotplugDevice) -> None:
    port = dev_get_drvdata(dev)
    assert isinstance(port, SerialPort)
    port.hung_up = True  # tty_vhangup()
    wake_up(port.rx.wait)
    await lifetime_device_del(serial_nodes, dev, port.cdev, port.rx, port.dev)
    kref_put(port.ref, serial_port_release)


serial_driver = HotplugDriver(name=DRIVER_NAME, probe=serial_probe, remove=serial_disconnect)
module_driver(serial_driver)
