"""Races and time jumps in the engine, driven through the sysfs files as a shell would drive
them, with the interleavings pinned by hold points and ``wait_all_tasks_blocked()``."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from fakesys.kernel.hw import CATCH_UP_MAX
from fakesys.kernfs import ErrnoError

from .engine import PLATFORM, booted, errno_of_write, open_node, read, write

FOO1 = "sys/devices/platform/foo.1"


async def test_bind_racing_the_module_unload_leaves_the_device_usable(
    nursery: trio.Nursery,
) -> None:
    kernel = await booted(nursery)
    # foo.1 is bound to another driver, whose unbind stops between remove() and devres.
    await write(kernel, f"{FOO1}/driver_override", "cdev_refcounted")
    await write(kernel, f"{PLATFORM}/drivers/cdev_refcounted/bind", "foo.1")
    await write(kernel, f"{FOO1}/driver_override", "\n")
    kernel.hold["unbind_devres"].arm()
    results: dict[str, int] = {}

    async def run(what: str, path: str, text: str) -> None:
        results[what] = await errno_of_write(kernel, path, text)

    nursery.start_soon(run, "unbind", f"{PLATFORM}/drivers/cdev_refcounted/unbind", "foo.1")
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.hold["unbind_devres"].state == "held"
    nursery.start_soon(run, "bind", f"{PLATFORM}/drivers/foo/bind", "foo.1")
    await trio.testing.wait_all_tasks_blocked()
    nursery.start_soon(run, "rmmod", "sys/kernel/debug/fakesys/delete_module", "foo")
    await trio.testing.wait_all_tasks_blocked()
    kernel.hold["unbind_devres"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert results["unbind"] == 0
    assert results["rmmod"] == 0
    # The bind got in before the driver went (and was undone by it), or found it gone.
    assert results["bind"] in (0, errno.ENODEV)
    assert "foo" not in kernel.modules
    assert "DRIVER=" not in await read(kernel, f"{FOO1}/uevent")
    assert kernel.lookup(f"{FOO1}/driver") is None
    # Nothing is stuck: with the module back, the device binds and unbinds again.
    await write(kernel, "sys/kernel/debug/fakesys/init_module", "foo")
    if kernel.lookup(f"{FOO1}/driver") is None:
        await write(kernel, f"{PLATFORM}/drivers/foo/bind", "foo.1")
    assert "DRIVER=foo" in await read(kernel, f"{FOO1}/uevent")
    await write(kernel, f"{PLATFORM}/drivers/foo/unbind", "foo.1")
    assert kernel.lookup(f"{FOO1}/driver") is None


async def test_a_probe_whose_links_fail_leaves_no_driver_behind(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    foo = kernel.buses["platform"].drivers["foo"]
    dev = kernel.buses["platform"].find_device_by_name("foo.1")
    assert foo.kn is not None and dev is not None and dev.kn is not None
    # A stray entry where the driver's link to the device goes: driver_sysfs_add() fails.
    stray = kernel.kernfs.create_link(foo.kn, "foo.1", dev.kn)
    assert await errno_of_write(kernel, f"{PLATFORM}/drivers/foo/bind", "foo.1") == errno.EEXIST
    assert dev.driver is None
    assert kernel.lookup(f"{FOO1}/driver") is None
    assert "really_probe: driver_sysfs_add failed" in kernel.log.text()
    kernel.kernfs.remove_link(stray)
    await write(kernel, f"{PLATFORM}/drivers/foo/bind", "foo.1")
    assert dev.driver is foo


async def test_a_dump_deleted_through_data_leaves_no_timer_behind(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    await trio.testing.wait_all_tasks_blocked()
    baseline = kernel.deferred_tasks
    for round_ in range(3):
        await write(kernel, "sys/devices/platform/dump_fixed.0/coredump", "1")
        await trio.testing.wait_all_tasks_blocked()
        assert kernel.deferred_tasks == baseline + 1  # the timeout, 300 s away, sleeping
        dump = f"sys/devices/virtual/devcoredump/devcd{round_ + 1}"
        await write(kernel, f"{dump}/data", "1")
        await trio.testing.wait_all_tasks_blocked()
        assert kernel.lookup(dump) is None
        # Cancel means gone: the timer does not sleep on until its old deadline.
        assert kernel.deferred_tasks == baseline


async def test_a_clock_jump_costs_one_wakeup_per_periodic_source(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery, "camera")
    camera = kernel.buses["platform"].find_device_by_name("camera.0")
    assert camera is not None
    video = await open_node(kernel, "video0")
    await trio.testing.wait_all_tasks_blocked()  # the source is running
    await write(kernel, "sys/kernel/debug/fakesys/advance_clock", "100000")
    await trio.testing.wait_all_tasks_blocked()
    # 100,000 periods fell due: a FIFO's worth is delivered in one go, the rest overran it.
    assert await video.read(0, 65536) == b"frame\n" * CATCH_UP_MAX
    assert camera.hw.dropped == (100_000 - CATCH_UP_MAX) * len(b"frame\n")


async def test_the_largest_clock_jump_does_not_stop_time(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    kernel = await booted(nursery, "camera")
    video = await open_node(kernel, "video0")
    await trio.testing.wait_all_tasks_blocked()  # the source is running
    await write(kernel, "sys/kernel/debug/fakesys/advance_clock", str(2**64 - 1))
    await trio.testing.wait_all_tasks_blocked()
    assert await video.read(0, 65536) == b"frame\n" * CATCH_UP_MAX
    # The source is still periodic at that time: one frame a second.
    await trio.sleep(2.5)
    assert await video.read(0, 65536) == b"frame\n" * 2


async def test_a_revoke_detach_ends_a_read_waiting_for_data(nursery: trio.Nursery) -> None:
    """The NetBSD design: sc_dying must prevent long waits, so a reader waiting for data is
    woken with EIO and the detach does not wait for data to arrive."""
    kernel = await booted(nursery)
    of = await open_node(kernel, "revoke0")
    got: list[bytes | int] = []

    async def reader() -> None:
        try:
            got.append(await of.read(0, 5))
        except ErrnoError as e:
            got.append(e.errno)

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    assert got == []
    path = f"{PLATFORM}/drivers/cdev_revoke/unbind"
    assert await errno_of_write(kernel, path, "cdev_revoke.0") == 0
    await trio.testing.wait_all_tasks_blocked()
    assert got == [errno.EIO]
    with pytest.raises(ErrnoError) as excinfo:  # the file was revoked
        await of.read(0, 5)
    assert excinfo.value.errno == errno.ENXIO
    await of.release()


async def test_a_revoke_detach_drains_a_read_that_is_copying(nursery: trio.Nursery) -> None:
    """A read past its wait (stopped at the ``read`` hold point, about to copy) holds the
    detach until it is done: the softc is freed only after it."""
    kernel = await booted(nursery)
    of = await open_node(kernel, "revoke0")
    await write(kernel, "sys/kernel/debug/fakesys/devices/cdev_revoke.0/feed", "hello")
    kernel.hold["read"].arm()
    got: list[bytes] = []
    unbound: list[int] = []

    async def reader() -> None:
        got.append(await of.read(0, 5))

    async def unbinder() -> None:
        path = f"{PLATFORM}/drivers/cdev_revoke/unbind"
        unbound.append(await errno_of_write(kernel, path, "cdev_revoke.0"))

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.hold["read"].state == "held"
    nursery.start_soon(unbinder)
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.lookup("sys/devices/platform/cdev_revoke.0/driver") is None  # it has begun
    assert (got, unbound) == ([], [])  # and it waits for the read
    kernel.hold["read"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert (got, unbound) == ([b"hello"], [0])
    await of.release()
    assert "KASAN" not in kernel.log.text()
