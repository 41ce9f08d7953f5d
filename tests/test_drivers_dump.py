"""The dumping drivers in the engine: whether a dump outlives its device's binding is the
driver's choice (dev_coredump_put() or not), whatever devcoredump core it runs on."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from fakesys.kernel import Kernel
from fakesys.kernel.module import delete_module

from .engine import booted as boot
from .engine import errno_of, kasan_reports, open_path, unbind, write

DEVCD = "sys/devices/virtual/devcoredump"


async def booted(nursery: trio.Nursery) -> Kernel:
    kernel = await boot(nursery)
    kernel.kasan.multi_shot = True
    return kernel


async def dump(kernel: Kernel, device: str) -> str:
    """Make ``device`` dump; the name of its dump."""
    await write(kernel, f"sys/devices/platform/{device}/coredump", "1")
    link = kernel.lookup(f"sys/devices/platform/{device}/devcoredump")
    assert link is not None
    return link.link_target().rsplit("/", 1)[-1]


async def read_dump(kernel: Kernel, name: str, count: int = 64) -> bytes:
    of = await open_path(kernel, f"{DEVCD}/{name}/data")
    try:
        return await of.read(0, count)
    finally:
        await of.release()


@pytest.mark.parametrize(
    ("device", "core"), [("dump_legacy.0", "pre-fix"), ("dump_legacy_fixed.0", "fixed")]
)
async def test_without_put_the_dump_outlives_the_unbind_on_either_core(
    nursery: trio.Nursery, device: str, core: str
) -> None:
    kernel = await booted(nursery)
    driver = device.removesuffix(".0")
    assert kernel.modules[driver].devcoredump_core == core
    name = await dump(kernel, device)
    content = await read_dump(kernel, name)
    await unbind(kernel, driver)
    assert kernel.lookup(f"{DEVCD}/{name}") is not None  # still there
    # its read callback reads the driver's state that devres freed, and gets what was left
    assert await read_dump(kernel, name) == content
    assert kasan_reports(kernel) == ["slab-use-after-free in dumper_coredump_read"]
    # the dump pins the module that owns it
    assert await errno_of(delete_module(kernel, driver)) == errno.EWOULDBLOCK


@pytest.mark.parametrize(("device", "core"), [("dump_put.0", "pre-fix"), ("dump_fixed.0", "fixed")])
async def test_with_put_the_dump_goes_at_unbind_on_either_core(
    nursery: trio.Nursery, device: str, core: str
) -> None:
    kernel = await booted(nursery)
    driver = device.removesuffix(".0")
    assert kernel.modules[driver].devcoredump_core == core
    name = await dump(kernel, device)
    await unbind(kernel, driver)
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.lookup(f"{DEVCD}/{name}") is None
    assert kasan_reports(kernel) == []
    assert await errno_of(delete_module(kernel, driver)) == 0


async def test_a_standalone_dump_is_read_without_the_driver(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    assert kernel.modules["dump_seed"].devcoredump_core == "seed"
    kernel.devcoredump.core = "fixed"  # on a core that keeps dumps across an unbind ...
    module = kernel.modules["dump_seed"]
    module.devcoredump_core = None
    name = await dump(kernel, "dump_seed.0")
    content = await read_dump(kernel, name)
    assert module.refcnt == 0  # dev_coredumpv(): no owner pinned
    await unbind(kernel, "dump_seed")
    assert await read_dump(kernel, name) == content  # ... it reads the same, safely
    assert kasan_reports(kernel) == []


async def test_the_seed_core_drops_a_standalone_dump_at_unbind(nursery: trio.Nursery) -> None:
    """Rodrigo Vivi's 2024 core removes every dump of a device that unbinds: a driver that
    unbinds and rebinds to recover loses the dump it just took."""
    kernel = await booted(nursery)
    name = await dump(kernel, "dump_seed.0")
    await unbind(kernel, "dump_seed")
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.lookup(f"{DEVCD}/{name}") is None


async def test_text_dumps_say_what_dumped_them(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    # the GPU dumps from its hang path: the hardware hangs, the recovery work takes the dump
    await write(kernel, "sys/kernel/debug/fakesys/devices/0000:00:02.0/hang", "1")
    await trio.testing.wait_all_tasks_blocked()
    name = "devcd1"
    header = (await read_dump(kernel, name, 4096)).decode().splitlines()
    assert header[0] == "kernel: 6.18.0-fakesys"
    assert header[1:2] == ["module: fakegpu"]
    assert header[4:6] == ["device: 0000:00:02.0", "driver: fakegpu"]
    assert kernel.devcoredump.entries  # the GPU's one-hour dump is there
    await write(kernel, "sys/kernel/debug/fakesys/advance_clock", "3599")
    assert kernel.lookup(f"{DEVCD}/{name}") is not None
    await write(kernel, "sys/kernel/debug/fakesys/advance_clock", "1")
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.lookup(f"{DEVCD}/{name}") is None
