"""thermo_fixed: the fix of thermo, a temperature sensor whose sysfs attribute outlived its
driver.

remove() takes the attribute away with device_remove_file() before the driver lets go of the
device, so no show() can run on the state devres frees after it: the file is gone with the
binding (ENOENT), and comes back with the next probe. device_remove_file() also waits for a
show in flight (kernfs_drain()). ``diff thermo.py thermo_fixed.py`` is the fix.
"""

from __future__ import annotations

from fakesys.linux import (
    IRQ_HANDLED,
    IRQ_NONE,
    Device,
    DeviceAttribute,
    IrqLine,
    PlatformDevice,
    PlatformDriver,
    Struct,
    container_of,
    device_create_file,
    device_remove_file,
    devm_kzalloc,
    free_irq,
    hw_rx_read,
    module_platform_driver,
    platform_get_drvdata,
    platform_get_irq,
    platform_set_drvdata,
    request_irq,
    s32,
    sysfs_attr_init,
    this_module,
)

THIS_MODULE = this_module()
DRIVER_NAME = "thermo_fixed"


class Thermo(Struct, var="priv"):
    """struct thermo: the sensor's last reading."""

    pdev: PlatformDevice
    temp1_input: DeviceAttribute
    millidegrees: s32
    readings: int


def thermo_temp_show(dev: Device, attr: DeviceAttribute) -> str:
    priv = container_of(attr, Thermo, "temp1_input")
    return f"{priv.millidegrees}\n"


def thermo_irq(irq: IrqLine, dev_id: object) -> int:
    """A new reading: the hardware sends it as text (``feed``)."""
    assert isinstance(dev_id, Thermo)
    data = hw_rx_read(dev_id.pdev)
    if not data.strip().lstrip(b"-").isdigit():
        return IRQ_NONE
    dev_id.millidegrees = int(data)
    dev_id.readings += 1
    return IRQ_HANDLED


async def thermo_probe(pdev: PlatformDevice) -> None:
    priv = devm_kzalloc(pdev, Thermo)
    priv.pdev = pdev
    platform_set_drvdata(pdev, priv)
    request_irq(platform_get_irq(pdev, 0), thermo_irq, 0, DRIVER_NAME, priv)
    attr = priv.temp1_input
    sysfs_attr_init(attr)
    attr.name, attr.mode, attr.show = "temp1_input", 0o444, thermo_temp_show
    device_create_file(pdev, attr)


async def thermo_remove(pdev: PlatformDevice) -> None:
    priv = platform_get_drvdata(pdev)
    assert isinstance(priv, Thermo)
    await device_remove_file(pdev, priv.temp1_input)
    free_irq(platform_get_irq(pdev, 0), priv)


thermo_driver = PlatformDriver(name=DRIVER_NAME, probe=thermo_probe, remove=thermo_remove)
module_platform_driver(thermo_driver)
