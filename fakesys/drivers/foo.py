"""foo: a platform driver that does nothing wrong.

Its data is devm-allocated in probe and nothing of it outlives the binding: no node, no
interrupt, no work. It is the plain driver of the default machine, to bind and unbind.
"""

from __future__ import annotations

from fakesys.linux import (
    PlatformDevice,
    PlatformDriver,
    Struct,
    devm_kzalloc,
    module_platform_driver,
    platform_set_drvdata,
    this_module,
    u32,
)

THIS_MODULE = this_module()


class FooPriv(Struct):
    """struct foo_priv"""

    ctrl: u32
    status: u32


async def foo_probe(pdev: PlatformDevice) -> None:
    priv = devm_kzalloc(pdev, FooPriv)
    priv.ctrl = 1
    platform_set_drvdata(pdev, priv)


foo_driver = PlatformDriver(name="foo", probe=foo_probe)
module_platform_driver(foo_driver)
