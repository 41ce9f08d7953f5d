"""Modules without a mount: ``/sys/module/<name>/`` as kernel/module/sysfs.c builds it, the
uevents of loading and unloading, and the order of steps in between."""

from __future__ import annotations

import errno
import os
import re
import struct

import pytest

from fakesys.kernel import Kernel
from fakesys.kernel.driver import driver_register, driver_unregister
from fakesys.kernel.module import (
    CORE_TYPES,
    MOD_TEXT,
    Module,
    delete_module,
    load_module,
)
from fakesys.kernel.platform import PlatformDriver
from fakesys.kernfs import PAGE_SIZE, Caller, ErrnoError, KernfsNode, current_caller, open_file


async def booted() -> tuple[Kernel, list[dict[str, str]]]:
    kernel = Kernel()
    await kernel.boot()
    events: list[dict[str, str]] = []
    kernel.uevent_listeners.append(lambda env: events.append(dict(env)))
    return kernel, events


def node(kernel: Kernel, path: str) -> KernfsNode:
    kn = kernel.lookup(path)
    assert kn is not None, path
    return kn


async def read(kernel: Kernel, path: str, uid: int = 0, offset: int = 0) -> bytes:
    """One read as user ``uid``, whom the FUSE layer names as the caller of a handle's I/O."""
    caller = Caller(os.getpid(), uid)
    token = current_caller.set(caller)
    try:
        of = await open_file(node(kernel, path), os.O_RDONLY, caller)
        try:
            return await of.read(offset, PAGE_SIZE)
        finally:
            await of.release()
    finally:
        current_caller.reset(token)


async def test_load_announces_the_module_after_its_init_and_its_drivers() -> None:
    kernel, events = await booted()
    seen: dict[str, object] = {}

    async def init(mod: Module) -> None:
        # mod_sysfs_setup() ran before the init: the directory is there, "coming", with the
        # reference held during initialization, and no drivers/ before the first driver.
        seen["state"] = (await read(kernel, "sys/module/m/initstate")).decode()
        seen["refcnt"] = (await read(kernel, "sys/module/m/refcnt")).decode()
        seen["initsize"] = int(await read(kernel, "sys/module/m/initsize"))
        seen["drivers before"] = kernel.lookup("sys/module/m/drivers") is not None
        await driver_register(PlatformDriver("mdrv", kernel=kernel, owner=mod))
        seen["drivers after"] = sorted(node(kernel, "sys/module/m/drivers").children)

    await load_module(kernel, "m", init)
    initsize = seen.pop("initsize")
    assert isinstance(initsize, int) and initsize > 0 and initsize % PAGE_SIZE == 0
    assert seen == {
        "state": "coming\n",
        "refcnt": "1\n",
        "drivers before": False,
        "drivers after": ["platform:mdrv"],
    }
    # do_init_module(): live, then the add uevent, after the driver's own
    assert [(e["ACTION"], e["DEVPATH"], e["SUBSYSTEM"]) for e in events] == [
        ("add", "/bus/platform/drivers/mdrv", "drivers"),
        ("add", "/module/m", "module"),
    ]
    assert list(events[1]) == ["ACTION", "DEVPATH", "SUBSYSTEM", "SEQNUM"]
    assert await read(kernel, "sys/module/m/initstate") == b"live\n"
    assert await read(kernel, "sys/module/m/refcnt") == b"0\n"
    # the init memory is freed once init is done
    assert await read(kernel, "sys/module/m/initsize") == b"0\n"


async def test_unload_takes_the_files_away_before_the_remove_uevent() -> None:
    kernel, events = await booted()
    await load_module(
        kernel, "m", lambda mod: driver_register(PlatformDriver("mdrv", kernel=kernel, owner=mod))
    )
    events.clear()
    left_at_remove: list[list[str]] = []

    def listener(env: list[tuple[str, str]]) -> None:
        if ("DEVPATH", "/module/m") in env:
            left_at_remove.append(sorted(node(kernel, "sys/module/m").children))

    kernel.uevent_listeners.append(listener)
    await delete_module(kernel, "m")
    assert [(e["ACTION"], e["DEVPATH"]) for e in events] == [
        ("remove", "/bus/platform/drivers/mdrv"),
        ("remove", "/module/m"),
    ]
    # mod_sysfs_teardown(): every file and subdirectory goes, then kobject_put() sends
    # "remove" (__kobject_del()) before the directory itself is removed
    assert left_at_remove == [[]]
    assert kernel.lookup("sys/module/m") is None
    assert "m" not in kernel.modules


async def test_failed_init_leaves_nothing_and_sends_no_uevent() -> None:
    kernel, events = await booted()

    async def init(mod: Module) -> None:
        await driver_register(PlatformDriver("mdrv", kernel=kernel, owner=mod))
        raise ErrnoError(errno.ENODEV)

    with pytest.raises(ErrnoError):
        await load_module(kernel, "m", init)
    assert kernel.lookup("sys/module/m") is None
    assert kernel.lookup("sys/bus/platform/drivers/mdrv") is None
    # the driver came and went; the module, never announced, sends neither add nor remove
    assert [(e["ACTION"], e["DEVPATH"]) for e in events] == [
        ("add", "/bus/platform/drivers/mdrv"),
        ("remove", "/bus/platform/drivers/mdrv"),
    ]


async def test_drivers_directory_outlives_its_last_driver() -> None:
    """module_remove_driver() removes the links only; drivers/ goes with the module."""
    kernel, _ = await booted()
    drivers: list[PlatformDriver] = []

    async def init(mod: Module) -> None:
        drivers.append(PlatformDriver("mdrv", kernel=kernel, owner=mod))
        await driver_register(drivers[0])

    await load_module(kernel, "m", init)
    await driver_unregister(drivers[0])
    assert node(kernel, "sys/module/m/drivers").children == {}
    assert kernel.lookup("sys/bus/platform/drivers/mdrv") is None


async def no_init(mod: Module) -> None:
    pass


async def loaded(name: str = "m") -> tuple[Kernel, Module]:
    """A kernel with one module loaded whose init does nothing."""
    kernel, _ = await booted()
    return kernel, await load_module(kernel, name, no_init)


async def test_modinfo_attributes_and_their_formats() -> None:
    kernel, mod = await loaded()
    files = node(kernel, "sys/module/m").children
    # modinfo_attrs of a module with CONFIG_MODULE_UNLOAD and a srcversion, holders/,
    # sections/ and notes/ (CONFIG_KALLSYMS); no drivers/, no driver registered
    assert sorted(files) == [
        "coresize",
        "holders",
        "initsize",
        "initstate",
        "notes",
        "refcnt",
        "sections",
        "srcversion",
        "taint",
        "uevent",
    ]
    modes = {name: kn.mode for name, kn in files.items() if kn.ops is not None}
    assert modes == {
        "coresize": 0o444,
        "initsize": 0o444,
        "initstate": 0o444,
        "refcnt": 0o444,
        "srcversion": 0o444,
        "taint": 0o444,
        "uevent": 0o200,
    }
    assert all(files[name].size == PAGE_SIZE for name in modes)
    coresize = int(await read(kernel, "sys/module/m/coresize"))
    assert coresize % PAGE_SIZE == 0
    assert coresize == sum(mod.layout.mem_size[t] for t in CORE_TYPES)
    # modpost: the 24-byte buffer of get_src_version() holds 23 hex digits and a NUL
    assert re.fullmatch(r"[0-9A-F]{23}\n", (await read(kernel, "sys/module/m/srcversion")).decode())
    assert await read(kernel, "sys/module/m/taint") == b"\n"
    # the same name gives the same module (reports and scripts can be compared across runs)
    _, again = await loaded()
    assert again.layout.srcversion == mod.layout.srcversion
    assert [s.size for s in again.layout.sections] == [s.size for s in mod.layout.sections]


async def test_sections_show_addresses_to_root_only() -> None:
    kernel, mod = await loaded()
    sections = node(kernel, "sys/module/m/sections").children
    assert ".text" in sections and ".gnu.linkonce.this_module" in sections
    # 0400, and st_size MODULE_SECT_READ_SIZE: "0x", 16 digits, "\n"
    assert {(kn.mode, kn.size) for kn in sections.values()} == {(0o400, 19)}
    text = await read(kernel, "sys/module/m/sections/.text")
    assert text == f"0x{mod.layout.mem_base[MOD_TEXT]:016x}\n".encode()
    base = mod.layout.mem_base[MOD_TEXT]
    assert base >= 0xFFFFFFFFC0000000 and base % PAGE_SIZE == 0
    # kallsyms_show_value() is false without CAP_SYSLOG: the address reads as NULL
    assert await read(kernel, "sys/module/m/sections/.text", uid=1000) == b"0x" + b"0" * 16 + b"\n"
    # module_sect_read(): only a read from offset 0
    with pytest.raises(ErrnoError) as excinfo:
        await read(kernel, "sys/module/m/sections/.text", offset=2)
    assert excinfo.value.errno == errno.EINVAL
    # every section of a memory type lies inside that type's region
    for section in mod.layout.sections:
        start = mod.layout.mem_base.get(section.mem_type)
        if section.mem_type in CORE_TYPES:
            assert start is not None
            assert start <= section.address
            assert section.address + section.size <= start + mod.layout.mem_size[section.mem_type]


async def test_notes_are_the_elf_notes() -> None:
    kernel, mod = await loaded()
    notes = node(kernel, "sys/module/m/notes").children
    assert sorted(notes) == [".note.Linux", ".note.gnu.build-id"]
    build_id = await read(kernel, "sys/module/m/notes/.note.gnu.build-id")
    assert notes[".note.gnu.build-id"].mode == 0o444
    assert notes[".note.gnu.build-id"].size == len(build_id) == 36
    namesz, descsz, note_type = struct.unpack_from("<III", build_id)
    assert (namesz, descsz, note_type) == (4, 20, 3)  # "GNU\0", 20 bytes, NT_GNU_BUILD_ID
    assert build_id[12:16] == b"GNU\0"
    assert build_id[16:] == mod.layout.build_id
    linux = await read(kernel, "sys/module/m/notes/.note.Linux")
    assert len(linux) == 48
    # two notes named "Linux": the build salt (0x100) and the LTO info (0x101)
    assert struct.unpack_from("<III", linux, 0) == (6, 1, 0x100)
    assert struct.unpack_from("<III", linux, 24) == (6, 4, 0x101)


async def test_holders_link_goes_with_the_module_that_uses() -> None:
    kernel, base = await loaded("base")
    user = await load_module(kernel, "user", no_init)
    user.use(base)
    assert node(kernel, "sys/module/base/holders/user").link_target() == "../../user"
    with pytest.raises(ErrnoError) as excinfo:
        await delete_module(kernel, "base")
    assert excinfo.value.errno == errno.EWOULDBLOCK
    await delete_module(kernel, "user")
    assert node(kernel, "sys/module/base/holders").children == {}
    await delete_module(kernel, "base")


async def test_try_module_get_fails_only_once_going() -> None:
    kernel, _ = await booted()
    got: list[bool] = []

    async def init(mod: Module) -> None:
        got.append(mod.try_get())  # module_is_live() holds for a coming module
        mod.put()

    mod = await load_module(kernel, "m", init)
    assert got == [True]
    assert mod.try_get()
    with pytest.raises(ErrnoError) as excinfo:
        await delete_module(kernel, "m")
    assert excinfo.value.errno == errno.EWOULDBLOCK
    mod.put()
    await delete_module(kernel, "m")
    assert not mod.try_get()
