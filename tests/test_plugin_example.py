"""How a downstream project tests against fakesys: only the public ``fakesys`` fixture."""

from __future__ import annotations

import os

import pytest
import trio

from fakesys.pytest_plugin import FakesysMount


@pytest.mark.fakesys_scenario("default")
def test_unbind_with_an_open_node(fakesys: FakesysMount) -> None:
    fd = os.open(fakesys / "dev/refcounted0", os.O_RDWR)
    mark = fakesys.kmsg_mark()
    fakesys.write("sys/bus/platform/drivers/cdev_refcounted/unbind", "cdev_refcounted.0")
    assert fakesys.wait_gone("dev/refcounted0")
    with pytest.raises(OSError, match="No such device"):
        os.read(fd, 1)
    os.close(fd)
    assert fakesys.taint() == 0
    assert not any("KASAN" in line for line in fakesys.kmsg_text(since=mark))


@pytest.mark.parametrize("fakesys", ["default"], indirect=True)
async def test_from_trio(fakesys: FakesysMount) -> None:
    """Blocking calls on the tree go to a thread, as any file I/O from trio should."""
    await trio.to_thread.run_sync(fakesys.write, "sys/devices/platform/dump_fixed.0/coredump", "1")
    assert await trio.to_thread.run_sync(fakesys.wait_for, "sys/class/devcoredump/devcd1")
    header = await trio.to_thread.run_sync(fakesys.read, "sys/class/devcoredump/devcd1/uevent")
    assert header == ""
