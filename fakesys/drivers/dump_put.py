"""dump_put: a driver that deletes its device coredump when it unbinds (v6.10, "devcoredump:
Add dev_coredump_put()" and "drm/xe: Remove devcoredump during driver release").

As dump_legacy, its dumps are read from its own devm state, but probe registers a devm action
that calls dev_coredump_put(), so the dump goes at unbind, before devres frees that state.
On the pre-fix devcoredump core this is the path of the lock cycle that the 2025 fix
"devcoredump: Fix circular locking dependency with devcd->mutex" removed: dev_coredump_put()
holds ``devcd->mutex`` while it flushes the deletion work, whose device_del() drains the
writers of ``data``, one of which wants the mutex. ``diff dump_legacy.py dump_put.py``.
"""

from __future__ import annotations

from fakesys.drivers.dumpdata import DumpContent, dump_content
from fakesys.linux import (
    GFP_KERNEL,
    HZ,
    PlatformDevice,
    PlatformDriver,
    Struct,
    dev_coredump_put,
    dev_coredumpm_timeout,
    devm_add_action_or_reset,
    devm_kzalloc,
    module_param,
    module_platform_driver,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    u64,
)

THIS_MODULE = this_module()
DRIVER_NAME = "dump_put"
dump_size = module_param("size", 1 << 20)
dump_format = module_param("format", "binary")
dump_timeout = module_param("timeout", 300)


class Dumper(Struct, var="priv"):
    """struct dumper: the device's state, which its dumps are read from."""

    regs: u64
    content: DumpContent | None
    dumps: int


def dumper_coredump_read(offset: int, count: int, data: object, datalen: int) -> bytes:
    priv = data
    assert isinstance(priv, Dumper)
    content = priv.content
    assert content is not None
    return content.read(offset, count)


def dumper_coredump_free(data: object) -> None:
    priv = data
    assert isinstance(priv, Dumper)
    priv.dumps -= 1


async def dumper_coredump(pdev: PlatformDevice) -> None:
    priv = platform_get_drvdata(pdev)
    assert isinstance(priv, Dumper)
    priv.content = dump_content(dump_size, dump_format, pdev, THIS_MODULE)
    priv.dumps += 1
    await dev_coredumpm_timeout(
        pdev, THIS_MODULE, priv, dump_size, GFP_KERNEL,
        dumper_coredump_read, dumper_coredump_free, dump_timeout * HZ,
    )  # fmt: skip


async def dumper_devcoredump_fini(data: object) -> None:
    assert isinstance(data, PlatformDevice)
    await dev_coredump_put(data)


async def dumper_probe(pdev: PlatformDevice) -> None:
    priv = devm_kzalloc(pdev, Dumper)
    platform_set_drvdata(pdev, priv)
    devm_add_action_or_reset(pdev, dumper_devcoredump_fini, pdev)


dumper_driver = PlatformDriver(name=DRIVER_NAME, probe=dumper_probe, coredump=dumper_coredump)
module_platform_driver(dumper_driver)
