"""Lifetime policies and hold points in the engine, with interleavings pinned down."""

from __future__ import annotations

import errno
import os

import pytest
import trio
import trio.testing

from fakesys import scenario
from fakesys.kernel import Kernel
from fakesys.kernel.bus import unbind_store
from fakesys.kernel.module import delete_module
from fakesys.kernel.panic import TAINT_BAD_PAGE
from fakesys.kernfs import Caller, ErrnoError, OpenFile, current_caller, open_file


async def booted(nursery: trio.Nursery) -> Kernel:
    return await scenario.boot(scenario.load(None), nursery)


async def open_node(kernel: Kernel, node: str, flags: int = os.O_RDWR) -> OpenFile:
    kn = kernel.lookup(f"dev/{node}")
    assert kn is not None
    return await open_file(kn, flags, Caller(os.getpid()))


async def unbind(kernel: Kernel, driver: str) -> None:
    drv = kernel.buses["platform"].drivers[driver]
    await unbind_store(drv, f"{driver}.0".encode())


async def test_hold_point_stops_a_read_until_released(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    of = await open_node(kernel, "refcounted0")
    hold = kernel.hold["read"]
    hold.arm()
    dev = kernel.buses["platform"].find_device_by_name("cdev_refcounted.0")
    assert dev is not None
    dev.hw.feed(b"abc")
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await of.read(0, 10))

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    assert hold.state == "held"
    assert got == []
    hold.release()
    await trio.testing.wait_all_tasks_blocked()
    assert got == [b"abc"]
    assert hold.state == "off"


async def test_delay_runs_on_the_engine_clock(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    kernel = await booted(nursery)
    kernel.hold["read"].delay_ms = 300
    dev = kernel.buses["platform"].find_device_by_name("cdev_refcounted.0")
    assert dev is not None
    dev.hw.feed(b"x")
    of = await open_node(kernel, "refcounted0")
    started = trio.current_time()
    assert await of.read(0, 1) == b"x"
    assert trio.current_time() - started == pytest.approx(0.3)


async def write_control(kernel: Kernel, path: str, text: str) -> None:
    kn = kernel.lookup(f"sys/kernel/debug/fakesys/{path}")
    assert kn is not None, path
    of = await open_file(kn, os.O_WRONLY, Caller(os.getpid()))
    try:
        assert await of.write(0, text.encode()) == len(text)
    finally:
        await of.release()


async def test_delay_ends_when_the_engine_clock_advances(nursery: trio.Nursery) -> None:
    """An hour's delay on trio's real clock: only ``advance_clock`` can end it in the test."""
    kernel = await booted(nursery)
    await write_control(kernel, "delay/read", "3600000")
    dev = kernel.buses["platform"].find_device_by_name("cdev_refcounted.0")
    assert dev is not None
    dev.hw.feed(b"x")
    of = await open_node(kernel, "refcounted0")
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await of.read(0, 1))

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    assert got == []
    await write_control(kernel, "advance_clock", "3599")
    await trio.testing.wait_all_tasks_blocked()
    assert got == []
    await write_control(kernel, "advance_clock", "1")
    await trio.testing.wait_all_tasks_blocked()
    assert got == [b"x"]


async def test_hold_point_of_one_device_stops_only_that_device(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    await write_control(kernel, "devices/cdev_refcounted.0/hold/read", "1")
    got: list[str] = []

    async def reader(node: str) -> None:
        of = await open_node(kernel, f"{node}0")
        got.append((await of.read(0, 10)).decode())

    for name in ("refcounted", "unplug"):
        dev = kernel.buses["platform"].find_device_by_name(f"cdev_{name}.0")
        assert dev is not None
        dev.hw.feed(name.encode())
        nursery.start_soon(reader, name)
    await trio.testing.wait_all_tasks_blocked()
    assert got == ["unplug"]
    assert kernel.hold.device_points("cdev_refcounted.0")["read"].state == "held"
    assert kernel.hold["read"].state == "off"
    await write_control(kernel, "devices/cdev_refcounted.0/hold/read", "0")
    await trio.testing.wait_all_tasks_blocked()
    assert got == ["unplug", "refcounted"]


async def test_unplug_waits_for_a_section_then_frees(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    dev = kernel.buses["platform"].find_device_by_name("cdev_unplug.0")
    assert dev is not None
    of = await open_node(kernel, "unplug0")
    kernel.hold["read"].arm()
    dev.hw.feed(b"data")
    record: list[str] = []

    async def reader() -> None:
        record.append((await of.read(0, 4)).decode())

    async def unbinder() -> None:
        await unbind(kernel, "cdev_unplug")
        record.append("unbound")

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(unbinder)
    await trio.testing.wait_all_tasks_blocked()
    assert record == []  # unplug waits for the section in the read
    kernel.hold["read"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert record == ["data", "unbound"]
    with pytest.raises(ErrnoError) as excinfo:
        await of.read(0, 4)
    assert excinfo.value.errno == errno.ENODEV
    await of.release()
    assert not kernel.taint.test(TAINT_BAD_PAGE)


async def test_devm_close_after_unbind_reports_in_release(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    of = await open_node(kernel, "devm0")
    await unbind(kernel, "cdev_devm")
    await of.release()
    assert "BUG: KASAN: slab-use-after-free in chardev_release+" in kernel.log.text()
    assert kernel.taint.test(TAINT_BAD_PAGE)


async def test_open_files_pin_the_module(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    module = kernel.modules["cdev_refcounted"]
    of = await open_node(kernel, "refcounted0")
    assert module.refcnt == 2
    with pytest.raises(ErrnoError) as excinfo:
        await delete_module(kernel, "cdev_refcounted")
    assert excinfo.value.errno == errno.EWOULDBLOCK
    await of.release()
    assert module.refcnt == 0
    await delete_module(kernel, "cdev_refcounted")
    assert "cdev_refcounted" not in kernel.modules
    assert kernel.lookup("dev/refcounted0") is None
    assert kernel.lookup("sys/bus/platform/drivers/cdev_refcounted") is None


async def test_racy_module_get_reads_the_freed_driver(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    kernel.hold["module_get"].arm()
    outcome: list[int] = []

    async def opener() -> None:
        token = current_caller.set(Caller(os.getpid()))
        try:
            await open_node(kernel, "modracy0", os.O_RDONLY)
        except ErrnoError as e:
            outcome.append(e.errno)
        finally:
            current_caller.reset(token)

    nursery.start_soon(opener)
    await trio.testing.wait_all_tasks_blocked()
    await delete_module(kernel, "cdev_modref_racy")  # the count is still 0: unload goes on
    kernel.hold["module_get"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert outcome == [errno.ENXIO]
    # the driver structure was in the module's memory, vfree()d at unload
    assert "BUG: KASAN: vmalloc-out-of-bounds in get_driver+" in kernel.log.text()


@pytest.mark.fakesys_deferred_work_may_fail
async def test_failing_deferred_work_is_logged_and_the_kernel_goes_on(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = await booted(nursery)
    ran: list[str] = []

    async def broken() -> None:
        raise ValueError("an engine bug")

    async def fine() -> None:
        ran.append("fine")

    kernel.spawn(broken)
    await trio.testing.wait_all_tasks_blocked()
    kernel.spawn(fine)
    await trio.testing.wait_all_tasks_blocked()
    assert "deferred kernel work failed" in caplog.text
    assert ran == ["fine"]


def test_deferred_work_that_raises_fails_the_engine_test(pytester: pytest.Pytester) -> None:
    """The plugin turns an exception the kernel only logged into a failed test."""
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        """
        import pytest
        import trio.testing
        from fakesys.kernel import Kernel

        async def break_deferred_work(nursery):
            kernel = Kernel()
            kernel.nursery = nursery

            async def broken():
                raise ValueError("a bug in deferred work")

            kernel.spawn(broken)
            await trio.testing.wait_all_tasks_blocked()

        async def test_unmarked(nursery):
            await break_deferred_work(nursery)

        @pytest.mark.fakesys_deferred_work_may_fail
        async def test_marked(nursery):
            await break_deferred_work(nursery)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_unmarked*", "*deferred kernel work raised*", "*ValueError: a bug in deferred work"]
    )


async def test_hardware_produces_on_the_engine_clock(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    kernel = await scenario.boot(scenario.load("camera"), nursery)
    of = await open_node(kernel, "video0", os.O_RDONLY)
    await trio.sleep(3.5)
    assert await of.read(0, 100) == b"frame\n" * 3
    kernel.clock.advance(2)  # the clock jumping ahead makes the sensor catch up
    await trio.testing.wait_all_tasks_blocked()
    assert await of.read(0, 100) == b"frame\n" * 2
