"""How a downstream project tests against fakesys: only the plugin's public fixtures and
helpers."""

from __future__ import annotations

import os

import pytest
import trio

from fakesys.pytest_plugin import FakesysMount, MountFactory


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


@pytest.mark.fakesys_scenario("default")
def test_the_uevents_of_an_unbind(fakesys: FakesysMount) -> None:
    with fakesys.uevents() as events:
        fakesys.write("sys/bus/platform/drivers/foo/unbind", "foo.0")
    assert [(e.action, e.devpath) for e in events] == [("unbind", "/devices/platform/foo.0")]
    assert events[0].env["SUBSYSTEM"] == "platform"


def test_a_dump_expires_when_the_clock_moves(fakesys: FakesysMount) -> None:
    with fakesys.uevents() as events:
        fakesys.write("sys/devices/platform/dump_fixed.0/coredump", "1")
        fakesys.advance_clock(299)
        assert (fakesys / "sys/class/devcoredump/devcd1").exists()
        fakesys.advance_clock(1)  # the 300 s of dev_coredumpm()
        assert not (fakesys / "sys/class/devcoredump/devcd1").exists()
    assert [(e.action, e.devpath) for e in events] == [
        ("add", "/devices/virtual/devcoredump/devcd1"),
        ("remove", "/devices/virtual/devcoredump/devcd1"),
    ]


def test_two_machines_at_once(fakesys_factory: MountFactory) -> None:
    gpu, camera = fakesys_factory("gpu"), fakesys_factory("camera")
    assert (gpu / "dev/dri/card0").exists()
    assert (camera / "dev/video0").exists()
    assert not (gpu / "dev/video0").exists()
