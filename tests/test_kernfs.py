"""The tree's own rules, without a mount."""

from __future__ import annotations

import errno
import os
import select

import pytest
import trio
import trio.testing

from fakesys.kernfs import (
    PAGE_SIZE,
    Attribute,
    BinAttribute,
    Caller,
    ErrnoError,
    KernfsRoot,
    open_file,
)

ME = Caller(pid=os.getpid())


def _errno_of(excinfo: pytest.ExceptionInfo[ErrnoError]) -> int:
    return excinfo.value.errno


async def test_removal_waits_for_a_store_in_flight() -> None:
    tree = KernfsRoot()
    d = tree.create_dir(tree.root, "d")
    release = trio.Event()
    record: list[str] = []

    async def store(buf: bytes) -> int:
        record.append("store started")
        await release.wait()
        record.append("store done")
        return len(buf)

    node = tree.create_file(d, "attr", 0o200, Attribute(store=store))
    of = await open_file(node, os.O_WRONLY, ME)

    async def remover() -> None:
        await tree.remove(d)
        record.append("removed")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(of.write, 0, b"x")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(remover)
        await trio.testing.wait_all_tasks_blocked()
        # deactivated: invisible to lookup, but not yet unlinked
        assert d.lookup("attr") is None
        assert tree.root.lookup("d") is None
        assert "d" in tree.root.children
        assert record == ["store started"]
        release.set()
    assert record == ["store started", "store done", "removed"]
    assert "d" not in tree.root.children


async def test_io_on_a_removed_node_is_enodev() -> None:
    tree = KernfsRoot()
    node = tree.create_file(tree.root, "a", 0o644, Attribute(lambda: "x\n"))
    of = await open_file(node, os.O_RDONLY, ME)
    assert await of.read(0, 100) == b"x\n"
    await tree.remove(node)
    with pytest.raises(ErrnoError) as excinfo:
        await of.read(0, 100)
    assert _errno_of(excinfo) == errno.ENODEV
    with pytest.raises(ErrnoError) as excinfo:
        await open_file(node, os.O_RDONLY, ME)
    assert _errno_of(excinfo) == errno.ENODEV
    assert of.poll() & select.POLLPRI


async def test_remove_self_lets_a_store_remove_its_own_directory() -> None:
    tree = KernfsRoot()
    d = tree.create_dir(tree.root, "dev")
    results: list[bool] = []

    async def store(buf: bytes) -> int:
        node = d.children["remove"]
        results.append(await tree.remove_self(node))
        await tree.remove(d)
        return len(buf)

    node = tree.create_file(d, "remove", 0o200, Attribute(store=store))
    of = await open_file(node, os.O_WRONLY, ME)
    with trio.fail_after(1):
        assert await of.write(0, b"1") == 1
    assert results == [True]
    assert "dev" not in tree.root.children


async def test_show_once_per_open_and_bad_count_is_cut_and_logged() -> None:
    warnings: list[str] = []
    tree = KernfsRoot(warn=warnings.append)
    calls = 0

    def show() -> str:
        nonlocal calls
        calls += 1
        return "y" * (PAGE_SIZE + 10)

    node = tree.create_file(tree.root, "big", 0o444, Attribute(show))
    of = await open_file(node, os.O_RDONLY, ME)
    first = await of.read(0, 100)
    rest = await of.read(100, 10 * PAGE_SIZE)
    assert calls == 1
    assert len(first) + len(rest) == PAGE_SIZE - 1
    assert warnings == ["fill_read_buffer: show+0x0/0x40 returned bad count"]
    await of.read(0, 1)
    assert calls == 2


async def test_each_write_is_cut_to_a_page_and_stored_once() -> None:
    tree = KernfsRoot()
    seen: list[int] = []

    async def store(buf: bytes) -> int:
        seen.append(len(buf))
        return len(buf)

    node = tree.create_file(tree.root, "w", 0o200, Attribute(store=store))
    of = await open_file(node, os.O_WRONLY, ME)
    assert await of.write(0, b"a" * 10000) == PAGE_SIZE
    assert await of.write(0, b"") == 0
    assert seen == [PAGE_SIZE]


async def test_open_checks_mode_and_callbacks_even_for_root() -> None:
    tree = KernfsRoot()

    async def store(buf: bytes) -> int:
        return len(buf)

    wo = tree.create_file(tree.root, "wo", 0o200, Attribute(store=store))
    ro = tree.create_file(tree.root, "ro", 0o444, Attribute(lambda: ""))
    no_show = tree.create_file(tree.root, "noshow", 0o644, Attribute(store=store))
    for node, flags in ((wo, os.O_RDONLY), (ro, os.O_WRONLY), (no_show, os.O_RDWR)):
        with pytest.raises(ErrnoError) as excinfo:
            await open_file(node, flags, ME)
        assert _errno_of(excinfo) == errno.EACCES
    await open_file(wo, os.O_WRONLY | os.O_TRUNC, ME)


async def test_bin_attribute_offsets_size_and_page_cap() -> None:
    tree = KernfsRoot()
    data = bytes(range(256)) * 40
    requests: list[tuple[int, int]] = []

    async def read(offset: int, count: int) -> bytes:
        requests.append((offset, count))
        return data[offset : offset + count]

    async def write(offset: int, buf: bytes) -> int:
        return len(buf)

    unbounded = tree.create_file(tree.root, "dump", 0o600, BinAttribute(read, write))
    of = await open_file(unbounded, os.O_RDWR, ME)
    assert await of.read(0, 65536) == data[:PAGE_SIZE]
    assert requests == [(0, PAGE_SIZE)]
    sized = tree.create_file(tree.root, "config", 0o644, BinAttribute(read, write, 256), 256)
    of = await open_file(sized, os.O_RDWR, ME)
    assert await of.read(200, 100) == data[200:256]
    assert await of.read(256, 100) == b""
    assert await of.write(250, b"x" * 10) == 6
    with pytest.raises(ErrnoError) as excinfo:
        await of.write(256, b"x")
    assert _errno_of(excinfo) == errno.EFBIG


def test_symlink_targets_are_relative_to_the_common_ancestor() -> None:
    tree = KernfsRoot()
    dev = tree.mkdir_p("sys/devices/platform/foo")
    drv = tree.mkdir_p("sys/bus/platform/drivers/drv")
    cases = [
        (tree.mkdir_p("sys/bus/platform/devices"), "foo", dev, "../../../devices/platform/foo"),
        (dev, "driver", drv, "../../../bus/platform/drivers/drv"),
        (drv, "foo", dev, "../../../../devices/platform/foo"),
        (dev, "self", dev, "../foo"),
    ]
    for parent, name, target, expected in cases:
        assert tree.create_link(parent, name, target).link_target() == expected


async def test_inode_numbers_are_never_reused() -> None:
    tree = KernfsRoot()
    seen = set()
    for _ in range(50):
        node = tree.create_dir(tree.root, "again")
        assert node.ino not in seen
        seen.add(node.ino)
        await tree.remove(node)


def test_duplicate_names_are_eexist() -> None:
    tree = KernfsRoot()
    tree.create_dir(tree.root, "x")
    with pytest.raises(ErrnoError) as excinfo:
        tree.create_dir(tree.root, "x")
    assert _errno_of(excinfo) == errno.EEXIST


async def test_poll_reports_change_until_the_next_read() -> None:
    tree = KernfsRoot()
    node = tree.create_file(tree.root, "p", 0o444, Attribute(lambda: "v\n"))
    of = await open_file(node, os.O_RDONLY, ME)
    assert of.poll() & select.POLLPRI  # before the first read
    await of.read(0, 10)
    assert not of.poll() & select.POLLPRI
    node.notify()
    assert of.poll() & select.POLLERR
    await of.read(0, 10)
    assert not of.poll() & select.POLLERR
