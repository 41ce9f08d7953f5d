"""The kernel log and /dev/kmsg semantics, without a mount."""

from __future__ import annotations

import errno
import os
import select

import pytest
import trio
import trio.testing

from fakesys.kernel.printk import DevKmsg, PrintkBuffer, Record
from fakesys.kernfs import Caller, ErrnoError, KernfsRoot, OpenFile, open_file


def clock() -> int:
    return 1_500_000


async def open_kmsg(log: PrintkBuffer, flags: int = os.O_RDONLY) -> OpenFile:
    tree = KernfsRoot()
    node = tree.create_file(tree.root, "kmsg", 0o644, DevKmsg(log))
    return await open_file(node, flags, Caller(os.getpid()))


def test_record_format_escapes_and_dictionary() -> None:
    record = Record(
        7, 1500, 3, 0, "a\\b\tc", (("SUBSYSTEM", "platform"), ("DEVICE", "+platform:foo.0"))
    )
    assert record.format() == (
        b"3,7,1500,-;a\\x5cb\\x09c\n SUBSYSTEM=platform\n DEVICE=+platform:foo.0\n"
    )


async def test_reader_gets_epipe_once_when_records_were_overwritten() -> None:
    log = PrintkBuffer(clock, capacity=200)
    of = await open_kmsg(log, os.O_RDONLY | os.O_NONBLOCK)
    for i in range(20):
        log.emit(6, f"message {i}")
    assert log.first_seq > 0
    assert of.poll() & select.POLLERR
    with pytest.raises(ErrnoError) as excinfo:
        await of.read(0, 4096)
    assert excinfo.value.errno == errno.EPIPE
    first = await of.read(0, 4096)
    assert first.startswith(f"6,{log.first_seq},1500,-;".encode())


async def test_blocking_read_waits_for_the_next_record() -> None:
    log = PrintkBuffer(clock)
    of = await open_kmsg(log)
    got: list[bytes] = []

    async def reader() -> None:
        got.append(await of.read(0, 4096))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        assert of.poll() == 0
        log.emit(4, "late")
    assert got == [b"4,0,1500,-;late\n"]


async def test_nonblocking_read_at_the_end_is_eagain() -> None:
    log = PrintkBuffer(clock)
    of = await open_kmsg(log, os.O_RDONLY | os.O_NONBLOCK)
    with pytest.raises(ErrnoError) as excinfo:
        await of.read(0, 4096)
    assert excinfo.value.errno == errno.EAGAIN


async def test_write_parses_the_level_prefix() -> None:
    log = PrintkBuffer(clock)
    of = await open_kmsg(log, os.O_WRONLY)
    assert await of.write(0, b"<2>crit\n") == 8
    assert await of.write(0, b"<x>odd") == 6
    assert await of.write(0, b"<14>user info") == 13
    records = log.records()
    assert [(r.facility, r.level, r.text) for r in records] == [
        (1, 2, "crit"),
        (1, 4, "<x>odd"),
        (1, 6, "user info"),
    ]
    with pytest.raises(ErrnoError) as excinfo:
        await of.write(0, b"x" * 2000)
    assert excinfo.value.errno == errno.EINVAL
