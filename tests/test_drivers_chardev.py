"""The character-device drivers, each on its own in the engine: what an open file gets across
an unbind, what KASAN sees, when the driver's memory is freed."""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable

import pytest
import trio
import trio.testing

from fakesys.drivers.lifetime import POLLERR, POLLHUP
from fakesys.kernel import Kernel
from fakesys.kernel.module import delete_module
from fakesys.kernel.panic import TAINT_BAD_PAGE
from fakesys.kernel.slab import Struct
from fakesys.kernfs import Caller, ErrnoError, OpenFile, current_caller

from .engine import CTL, booted, errno_of, kasan_reports, open_node, unbind, write


def priv_of(kernel: Kernel, device: str) -> Struct:
    dev = kernel.buses["platform"].find_device_by_name(device)
    assert dev is not None
    priv = dev.driver_data
    assert isinstance(priv, Struct)
    return priv


async def feed(kernel: Kernel, device: str, data: str) -> None:
    await write(kernel, f"{CTL}/devices/{device}/feed", data)


async def test_devm_file_touches_freed_memory_after_unbind(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    kernel.kasan.multi_shot = True
    of = await open_node(kernel, "devm0")
    await feed(kernel, "cdev_devm.0", "hello")
    assert await of.read(0, 5) == b"hello"
    priv = priv_of(kernel, "cdev_devm.0")
    await unbind(kernel, "cdev_devm")
    assert priv.freed  # devres freed it right after remove(), with the file still open
    # the driver's "gone" mark is read from the freed memory, where remove() left it set
    assert await errno_of(of.read(0, 5)) == errno.ENODEV
    assert await errno_of(of.write(0, b"x")) == errno.ENODEV
    assert of.poll() == POLLERR | POLLHUP
    await of.release()
    assert kasan_reports(kernel) == [
        f"slab-use-after-free in chardev_{fn}" for fn in ("read", "write", "poll", "release")
    ]
    assert kernel.taint.test(TAINT_BAD_PAGE)


async def test_refcounted_data_lives_until_the_last_close(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    of = await open_node(kernel, "refcounted0")
    priv = priv_of(kernel, "cdev_refcounted.0")
    await unbind(kernel, "cdev_refcounted")
    assert not priv.freed
    assert await errno_of(of.read(0, 5)) == errno.ENODEV
    assert await errno_of(of.write(0, b"x")) == errno.ENODEV
    await of.release()
    assert priv.freed
    assert kasan_reports(kernel) == []
    assert kernel.taint.mask == 0


async def test_refcounted_wakes_a_blocked_reader_at_unbind(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    of = await open_node(kernel, "refcounted0")
    result: list[int] = []

    async def reader() -> None:
        result.append(await errno_of(of.read(0, 5)))

    nursery.start_soon(reader)
    await trio.testing.wait_all_tasks_blocked()
    dev = kernel.buses["platform"].find_device_by_name("cdev_refcounted.0")
    assert dev is not None and dev.hw.readers == 1
    await unbind(kernel, "cdev_refcounted")
    await trio.testing.wait_all_tasks_blocked()
    assert result == [errno.ENODEV]
    assert dev.hw.readers == 0
    await of.release()


async def test_nonblocking_reads_and_poll_follow_the_data(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    of = await open_node(kernel, "refcounted0", os.O_RDWR | os.O_NONBLOCK)
    assert await errno_of(of.read(0, 5)) == errno.EAGAIN
    writable = of.poll()
    await feed(kernel, "cdev_refcounted.0", "data")
    assert of.poll() != writable  # now readable too
    assert await of.read(0, 10) == b"data"
    await of.release()


async def test_revoked_files_fail_with_enxio_and_close(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    of = await open_node(kernel, "revoke0")
    sc = priv_of(kernel, "cdev_revoke.0")
    await unbind(kernel, "cdev_revoke")
    assert sc.freed  # nothing was in flight: detach freed the softc at once
    assert await errno_of(of.read(0, 1)) == errno.ENXIO
    assert await errno_of(of.write(0, b"x")) == errno.ENXIO
    await of.release()
    assert kasan_reports(kernel) == []


async def test_unplug_waits_for_the_sections_then_frees_the_resources(
    nursery: trio.Nursery,
) -> None:
    kernel = await booted(nursery)
    of = await open_node(kernel, "unplug0")
    await feed(kernel, "cdev_unplug.0", "x")
    kernel.hold["read"].arm()  # a read inside its section, about to copy
    got: list[bytes] = []
    nursery.start_soon(lambda: read_into(of, got))
    await trio.testing.wait_all_tasks_blocked()
    udev = priv_of(kernel, "cdev_unplug.0")
    resources = udev.res  # the devm-managed resources of the RFC's sections
    assert isinstance(resources, Struct)
    unbound: list[bool] = []

    async def unbinder() -> None:
        await unbind(kernel, "cdev_unplug")
        unbound.append(True)

    nursery.start_soon(unbinder)
    await trio.testing.wait_all_tasks_blocked()
    assert unbound == [] and not resources.freed  # video_device_unplug() waits
    kernel.hold["read"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert got == [b"x"] and unbound == [True]
    assert resources.freed
    assert await errno_of(of.read(0, 1)) == errno.ENODEV  # no new section
    await of.release()
    assert kasan_reports(kernel) == []


async def read_into(of: OpenFile, got: list[bytes]) -> None:
    got.append(await of.read(0, 10))


@pytest.mark.parametrize(
    ("driver", "reports"),
    [("cdev_irq_devm", ["slab-use-after-free in tasklet_action_common"]), ("cdev_irq_fixed", [])],
)
async def test_an_interrupt_between_remove_and_devres(
    nursery: trio.Nursery, driver: str, reports: list[str]
) -> None:
    kernel = await booted(nursery)
    kernel.hold["unbind_devres"].arm()
    kernel.hold["tasklet"].arm()
    nursery.start_soon(unbind, kernel, driver)
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.hold["unbind_devres"].state == "held"
    await write(kernel, f"{CTL}/devices/{driver}.0/irq", "1")
    await trio.testing.wait_all_tasks_blocked()
    # the buggy driver's IRQ is still requested: its handler scheduled the tasklet again
    assert kernel.hold["tasklet"].state == ("held" if reports else "armed")
    kernel.hold["unbind_devres"].release()
    await trio.testing.wait_all_tasks_blocked()
    kernel.hold["tasklet"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert kasan_reports(kernel) == reports


async def open_held_at_module_get(
    kernel: Kernel, nursery: trio.Nursery, node: str, outcome: list[int]
) -> None:
    kernel.hold["module_get"].arm()

    async def opener() -> None:
        token = current_caller.set(Caller(os.getpid()))
        try:
            of = await open_node(kernel, node)
        except ErrnoError as e:
            outcome.append(e.errno)
        else:
            outcome.append(0)
            await of.release()
        finally:
            current_caller.reset(token)

    nursery.start_soon(opener)
    await trio.testing.wait_all_tasks_blocked()
    assert kernel.hold["module_get"].state == "held"


async def test_racy_open_wakes_up_in_the_unloaded_modules_text(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    outcome: list[int] = []
    await open_held_at_module_get(kernel, nursery, "modracy0", outcome)
    await delete_module(kernel, "cdev_modref_racy")  # nothing is pinned yet: it goes
    kernel.hold["module_get"].release()
    await trio.testing.wait_all_tasks_blocked()
    # the open sleeps in the module's code, which the unload freed: the task dies in the
    # page fault of the instruction fetch, before it can read anything
    assert outcome == [errno.EINTR]
    assert "#PF: supervisor instruction fetch in kernel mode" in kernel.log.text()
    assert kasan_reports(kernel) == []


async def test_locked_open_and_unload_exclude_each_other(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery)
    outcome: list[int] = []
    await open_held_at_module_get(kernel, nursery, "modlocked0", outcome)
    unloaded: list[int] = []
    nursery.start_soon(lambda: record_errno(delete_module(kernel, "cdev_modref_locked"), unloaded))
    await trio.testing.wait_all_tasks_blocked()
    assert unloaded == []  # the exit waits for the driver lock the open holds
    kernel.hold["module_get"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert outcome == [errno.ENXIO] and unloaded == [0]  # the module was going: no reference
    assert kasan_reports(kernel) == []


async def test_locked_open_during_an_unbind_fails_or_succeeds_cleanly(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """An unbind while the open is held at the module reference waits for the driver lock:
    the open completes, and the unbind then marks the device gone (no EIO, no report)."""
    kernel = await booted(nursery)
    outcome: list[int] = []
    await open_held_at_module_get(kernel, nursery, "modlocked0", outcome)
    nursery.start_soon(unbind, kernel, "cdev_modref_locked")
    await trio.testing.wait_all_tasks_blocked()
    kernel.hold["module_get"].release()
    await trio.testing.wait_all_tasks_blocked()
    assert outcome == [0]
    assert kernel.lookup("dev/modlocked0") is None
    assert kasan_reports(kernel) == []
    assert kernel.modules["cdev_modref_locked"].refcnt == 0  # the file's reference went
    assert "Traceback" not in caplog.text


async def record_errno(call: Awaitable[object], into: list[int]) -> None:
    into.append(await errno_of(call))
