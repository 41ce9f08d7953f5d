"""Whatever is written to whatever file, the engine answers with an errno or a count, and
keeps working: no exception escapes, as the daemon must never die from a client's input."""

from __future__ import annotations

import os

import trio
import trio.testing

from fakesys import scenario
from fakesys.kernfs import Caller, ErrnoError, KernfsNode, NodeKind, open_file

NASTY = (
    b"",
    b"\n",
    b"\0",
    b"-1",
    b"1",
    b"0",
    b"0x10",
    b"  1  ",
    b"99999999999999999999999999",
    b"foo.0\n",
    b"0000:00:02.0",
    b"\xff\xfe\x00garbage",
    b"x" * 5000,
)


# Arming a hold point stops the next operation that reaches it until someone releases it, and
# a uevent helper runs a program for every event: both do what they are for, not tested here.
# The hold points are in ``hold/`` and in each device's ``devices/<dev>/hold/``.
def skipped(node: KernfsNode) -> bool:
    path = node.path()
    return ("/sys/kernel/debug/fakesys/" in path and "/hold/" in path) or path == UEVENT_HELPER


UEVENT_HELPER = "/sys/kernel/uevent_helper"


def files_below(node: KernfsNode, mode_bits: int) -> list[KernfsNode]:
    """The files below ``node`` with any of ``mode_bits`` set."""
    found = []
    for child in node.children.values():
        if child.kind is NodeKind.DIR:
            found += files_below(child, mode_bits)
        elif child.kind is NodeKind.FILE and child.mode & mode_bits:
            found.append(child)
    return found


async def test_every_writable_file_takes_any_input(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    kernel = await scenario.boot(scenario.load(None), nursery)
    caller = Caller(os.getpid())
    files = [f for f in files_below(kernel.kernfs.root, 0o222) if not skipped(f)]
    assert len(files) > 100
    outcomes = {"written": 0, "refused": 0}
    for node in files:
        for data in NASTY:
            try:
                of = await open_file(node, os.O_WRONLY, caller)
                await of.write(0, data)
                await of.release()
            except ErrnoError:
                outcomes["refused"] += 1
            else:
                outcomes["written"] += 1
            await trio.testing.wait_all_tasks_blocked()
    assert outcomes["written"] and outcomes["refused"]
    # and the machine still works
    foo = kernel.buses["platform"].drivers.get("foo")
    assert foo is not None
    assert kernel.lookup("sys/bus/platform/drivers/foo/bind") is not None


async def test_every_readable_file_reads_or_refuses(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    kernel = await scenario.boot(scenario.load(None), nursery)
    caller = Caller(os.getpid())
    # a dump, so that its files are read too
    coredump = kernel.lookup("sys/devices/platform/dump_fixed.0/coredump")
    assert coredump is not None
    of = await open_file(coredump, os.O_WRONLY, caller)
    await of.write(0, b"1")
    read = 0
    for node in files_below(kernel.kernfs.root, 0o444):
        try:
            of = await open_file(node, os.O_RDONLY | os.O_NONBLOCK, caller)
            await of.read(0, 65536)
            await of.release()
            read += 1
        except ErrnoError:
            pass
    assert read > 250
