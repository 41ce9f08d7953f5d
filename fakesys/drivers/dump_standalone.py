"""dump_standalone: a driver whose device coredumps stand alone (dev_coredumpv(), as iwlwifi's
firmware dumps do).

The dump is a copy handed over to devcoredump: no module is pinned, and reading it never calls
into the driver, so it can safely outlive the device's binding. On Rodrigo Vivi's unmerged
2024 core ("devcoredump: Remove devcoredump device if failing device is gone"), which removes
every dump when its failing device unbinds, such a driver loses the dump it just took when it
unbinds and rebinds to recover: Johannes Berg's objection to the patch.
"""

from __future__ import annotations

from fakesys.drivers.dumpdata import dump_content
from fakesys.linux import (
    GFP_KERNEL,
    PlatformDevice,
    PlatformDriver,
    dev_coredumpv,
    module_param,
    module_platform_driver,
    this_module,
)

THIS_MODULE = this_module()
DRIVER_NAME = "dump_standalone"
dump_size = module_param("size", 1 << 20)
dump_format = module_param("format", "binary")


async def standalone_coredump(pdev: PlatformDevice) -> None:
    content = dump_content(dump_size, dump_format, pdev, THIS_MODULE)
    data = content.read(0, dump_size)
    await dev_coredumpv(pdev, data, len(data), GFP_KERNEL)


standalone_driver = PlatformDriver(name=DRIVER_NAME, coredump=standalone_coredump)
module_platform_driver(standalone_driver)
