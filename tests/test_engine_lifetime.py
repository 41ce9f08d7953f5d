"""Lifetime policies and hold points in the engine, with interleavings pinned down."""

from __future__ import annotations

import errno
import os
import re

import pytest
import trio
import trio.testing

from fakesys import scenario
from fakesys.kernel import Kernel
from fakesys.kernel.bus import unbind_store
from fakesys.kernel.calls import running
from fakesys.kernel.module import delete_module
from fakesys.kernel.panic import TAINT_BAD_PAGE, TaskKilled
from fakesys.kernel.slab import Struct, kfree, kzalloc
from fakesys.kernel.stacktrace import frame
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


async def test_racy_module_get_resumes_in_the_freed_module(nursery: trio.Nursery) -> None:
    """The open sleeps in the module's own code between the lookup and the reference; the
    unload frees the module, text included (vfree() unmaps it), so the open wakes up in text
    that is gone: an instruction fetch page fault, and the task dies (it is this process
    here, which is never signalled)."""
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
    assert outcome == [errno.EINTR]  # TaskKilled: nothing of the open went on
    log = kernel.log.text()
    assert "BUG: unable to handle page fault for address: ffffffffc" in log
    assert "#PF: supervisor instruction fetch in kernel mode" in log
    assert "#PF: error_code(0x0010) - not-present page" in log
    assert "[last unloaded: cdev_modref_racy]" in log
    assert "BUG: KASAN" not in log  # nothing ran after the fetch to read the freed driver
    assert kernel.taint.mask == 1 << 7  # D


async def test_built_in_code_reading_an_unloaded_module_is_reported_then_faults(
    nursery: trio.Nursery,
) -> None:
    """A driver structure lives in its module's memory, vfree()d at unload: with
    CONFIG_KASAN_VMALLOC its shadow is KASAN_VMALLOC_INVALID, so KASAN names the bug
    vmalloc-out-of-bounds (mm/kasan/report_generic.c), and on x86-64 the module area is
    neither the direct map nor vmalloc space, so print_address_description() has no page or
    mapping to describe (mm/kasan/report.c). Then the read itself faults: the pages are
    unmapped, and the task dies."""
    kernel = await booted(nursery)
    kernel.kasan.multi_shot = True
    drv = kernel.buses["platform"].drivers["foo"]
    await delete_module(kernel, "foo")
    # 2002's get_driver() in built-in code, after its module went: drv->owner
    with running(kernel), frame("get_driver"), pytest.raises(TaskKilled):
        drv.owner  # noqa: B018 (the read is the point)
    log = kernel.log.text().split("\n")
    bug = log.index(next(line for line in log if line.startswith("BUG: KASAN")))
    assert log[bug].startswith("BUG: KASAN: vmalloc-out-of-bounds in get_driver+")
    assert log[bug + 1].startswith("Read of size 8 at addr ffffffffc")
    after_stack = log.index(" </TASK>", bug) + 1
    assert log[after_stack : after_stack + 2] == ["", "Memory state around the buggy address:"]
    assert set(" ".join(log[after_stack + 2 : after_stack + 8]).split()) >= {"f8"}
    fault = log.index(next(line for line in log if line.startswith("BUG: unable to handle")))
    assert fault > bug
    assert log[fault + 1 : fault + 3] == [
        "#PF: supervisor read access in kernel mode",
        "#PF: error_code(0x0000) - not-present page",
    ]
    assert any(line.startswith("RIP: 0010:get_driver+") for line in log[fault:])
    assert kernel.taint.mask == (1 << TAINT_BAD_PAGE) | (1 << 7)  # B, then D


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


async def test_double_free_is_described_as_the_kernel_does(nursery: trio.Nursery) -> None:
    """kasan_report_invalid_free(): "double-free in <the kfree>", "Free of addr", the
    object's tracks and description without a region state (only a slab-use-after-free says
    "freed"), the physical page and the shadow (mm/kasan/report.c)."""
    kernel = await booted(nursery)

    class Twice(Struct, var="t"):
        count: int

    with running(kernel), frame("twice_release"):
        obj = kzalloc(Twice)
        kfree(obj)
        kfree(obj)
    log = kernel.log.text().split("\n")
    bug = log.index(next(line for line in log if line.startswith("BUG: KASAN")))
    assert log[bug].startswith("BUG: KASAN: double-free in kfree+")
    assert log[bug + 1].startswith("Free of addr ffff888")
    described = log.index(" which belongs to the cache kmalloc-8 of size 8", bug)
    assert log[described + 1] == "The buggy address is located 0 bytes inside of"
    assert re.fullmatch(r" 8-byte region \[[0-9a-f]{16}, [0-9a-f]{16}\)", log[described + 2])
    assert log[described + 4] == "The buggy address belongs to the physical page:"
    assert "Memory state around the buggy address:" in log[described:]
    assert kernel.taint.mask == 1 << TAINT_BAD_PAGE
