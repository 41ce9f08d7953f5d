"""dump_standalone: a driver whose device coredumps stand alone: a scatter-gather table handed
over with dev_coredumpsg(), as iwlwifi's firmware dumps are (iwl_fw_error_dump_sgl()), or with
``api=v`` a vmalloc'ed buffer handed over with dev_coredumpv(), as ath10k's are.

The dump is a copy handed over to devcoredump: no module is pinned, and reading it never calls
into the driver, so it can safely outlive the device's binding. The two differ past the end:
a read at an offset beyond a dev_coredumpsg() dump is EINVAL (devcd_read_from_sgtable()), one
beyond a dev_coredumpv() dump is the end of file (memory_read_from_buffer()).

On Rodrigo Vivi's unmerged 2024 core ("devcoredump: Remove devcoredump device if failing device
is gone"), which removes every dump when its failing device unbinds, such a driver loses the
dump it just took when it unbinds and rebinds to recover: Johannes Berg's objection to the
patch.
"""

from __future__ import annotations

from fakesys.drivers.dumpdata import dump_content
from fakesys.linux import (
    EINVAL,
    GFP_KERNEL,
    PAGE_SIZE,
    ErrnoError,
    PlatformDevice,
    PlatformDriver,
    dev_coredumpsg,
    dev_coredumpv,
    module_param,
    module_platform_driver,
    this_module,
)

THIS_MODULE = this_module()
DRIVER_NAME = "dump_standalone"
dump_size = module_param("size", 1 << 20)
dump_format = module_param("format", "binary")
dump_api = module_param("api", "sg")


async def standalone_coredump(pdev: PlatformDevice) -> None:
    content = dump_content(dump_size, dump_format, pdev, THIS_MODULE)
    if dump_api == "sg":
        table = [content.read(pos, PAGE_SIZE) for pos in range(0, dump_size, PAGE_SIZE)]
        await dev_coredumpsg(pdev, table, dump_size, GFP_KERNEL)
    elif dump_api == "v":
        data = content.read(0, dump_size)
        await dev_coredumpv(pdev, data, len(data), GFP_KERNEL)
    else:
        raise ErrnoError(EINVAL)


standalone_driver = PlatformDriver(name=DRIVER_NAME, coredump=standalone_coredump)
module_platform_driver(standalone_driver)
