"""dump_legacy: a driver whose device coredump outlives its unbind (before v6.10; kernel-abi.md
§1, and the 2024 patch "devcoredump: Remove devcoredump device if failing device is gone").

Its ``coredump`` callback hands its own devm state to dev_coredumpm() with THIS_MODULE as
owner, and a read callback that reads from it. Nothing removes the dump when the device
unbinds: the devcoredump core keeps the failing device and the module pinned (rmmod fails
with EWOULDBLOCK while the dump exists), and a read of ``data`` after the unbind runs the
read callback on freed memory.

The dump's size, format and timeout are module parameters (``size``, ``format``: ``binary``
or ``text``, ``timeout`` in seconds). ``dump_put.py`` is the same driver calling
dev_coredump_put() at unbind: ``diff dump_legacy.py dump_put.py``.
"""

from __future__ import annotations

from fakesys.drivers.dumpdata import DumpContent, dump_content
from fakesys.linux import (
    GFP_KERNEL,
    HZ,
    PlatformDevice,
    PlatformDriver,
    Struct,
    dev_coredumpm_timeout,
    devm_kzalloc,
    module_param,
    module_platform_driver,
    platform_get_drvdata,
    platform_set_drvdata,
    this_module,
    u64,
)

THIS_MODULE = this_module()
DRIVER_NAME = "dump_legacy"
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


async def dumper_probe(pdev: PlatformDevice) -> None:
    priv = devm_kzalloc(pdev, Dumper)
    platform_set_drvdata(pdev, priv)


dumper_driver = PlatformDriver(name=DRIVER_NAME, probe=dumper_probe, coredump=dumper_coredump)
module_platform_driver(dumper_driver)
