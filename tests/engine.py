"""Helpers for engine tests (no mount): boot a scenario and use its files as a program would,
through kernfs opens, reads and writes."""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable

import trio

from fakesys import scenario
from fakesys.kernel import Kernel
from fakesys.kernfs import Caller, ErrnoError, OpenFile, open_file

PLATFORM = "sys/bus/platform"
CTL = "sys/kernel/debug/fakesys"


async def booted(nursery: trio.Nursery | None = None, name: str | None = None) -> Kernel:
    """A kernel booted with the shipped scenario ``name`` (or a scenario file's path)."""
    return await scenario.boot(scenario.load(name), nursery)


async def open_path(kernel: Kernel, path: str, flags: int = os.O_RDWR) -> OpenFile:
    kn = kernel.lookup(path)
    if kn is None:
        raise ErrnoError(errno.ENOENT)
    return await open_file(kn, flags, Caller(os.getpid()))


async def open_node(kernel: Kernel, node: str, flags: int = os.O_RDWR) -> OpenFile:
    """open(2) of ``/dev/<node>``."""
    return await open_path(kernel, f"dev/{node}", flags)


async def write(kernel: Kernel, path: str, text: str) -> None:
    """One write(2) of ``text`` to the file at ``path``, as ``echo -n`` would do it."""
    of = await open_path(kernel, path, os.O_WRONLY)
    try:
        await of.write(0, text.encode())
    finally:
        await of.release()


async def read(kernel: Kernel, path: str) -> str:
    of = await open_path(kernel, path, os.O_RDONLY)
    try:
        return (await of.read(0, 4096)).decode()
    finally:
        await of.release()


async def errno_of_write(kernel: Kernel, path: str, text: str) -> int:
    """0 if the write succeeded, else its errno."""
    try:
        await write(kernel, path, text)
    except ErrnoError as e:
        return e.errno
    return 0


async def errno_of(call: Awaitable[object]) -> int:
    """The errno an awaitable raises (0 if none)."""
    try:
        await call
    except ErrnoError as e:
        return e.errno
    return 0


async def unbind(kernel: Kernel, driver: str, device: str | None = None) -> None:
    await write(kernel, f"{PLATFORM}/drivers/{driver}/unbind", device or f"{driver}.0")


async def bind(kernel: Kernel, driver: str, device: str | None = None) -> None:
    await write(kernel, f"{PLATFORM}/drivers/{driver}/bind", device or f"{driver}.0")


def kasan_reports(kernel: Kernel) -> list[str]:
    """The headers of the KASAN reports in the log, as ``<bug> in <function>``."""
    return [
        line.removeprefix("BUG: KASAN: ").split("+")[0]
        for line in kernel.log.text().splitlines()
        if line.startswith("BUG: KASAN: ")
    ]
