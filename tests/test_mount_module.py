"""``/sys/module/<name>/`` through a real mount, against kernel/module/sysfs.c and, where this
machine has loadable modules, against its own ``/sys/module``."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from .conftest import Mount

CTL = "sys/kernel/debug/fakesys"

UEVENT_READER = f"""
import os
fd = os.open("{CTL}/uevents", os.O_RDONLY | os.O_NONBLOCK)
for name, action in (("foo", "delete_module"), ("foo", "init_module")):
    with open("{CTL}/" + action, "w") as f:
        f.write(name)
while True:
    try:
        event = os.read(fd, 65536).decode()
    except BlockingIOError:
        break
    print(event.split("\\n", 1)[0].split("] ", 1)[1])
"""


def test_rmmod_and_insmod_send_module_uevents_after_the_drivers(mount: Mount) -> None:
    out = mount.python(UEVENT_READER)
    assert out.returncode == 0, out.stderr
    assert [line.split() for line in out.stdout.splitlines()] == [
        ["unbind", "/devices/platform/foo.0", "(platform)"],
        ["remove", "/bus/platform/drivers/foo", "(drivers)"],
        ["remove", "/module/foo", "(module)"],
        # bus_add_driver() attaches (to every matching device) before it announces the driver
        ["bind", "/devices/platform/foo.0", "(platform)"],
        ["bind", "/devices/platform/foo.1", "(platform)"],
        ["add", "/bus/platform/drivers/foo", "(drivers)"],
        ["add", "/module/foo", "(module)"],
    ]


def test_module_files_have_the_kernels_modes_sizes_and_formats(mount: Mount) -> None:
    top = mount.path / "sys/module/foo"
    listing = {p.name: os.lstat(p) for p in top.iterdir()}
    expected = {
        "coresize": stat.S_IFREG | 0o444,
        "initsize": stat.S_IFREG | 0o444,
        "initstate": stat.S_IFREG | 0o444,
        "refcnt": stat.S_IFREG | 0o444,
        "srcversion": stat.S_IFREG | 0o444,
        "taint": stat.S_IFREG | 0o444,
        "uevent": stat.S_IFREG | 0o200,
        "drivers": stat.S_IFDIR | 0o755,
        "holders": stat.S_IFDIR | 0o755,
        "notes": stat.S_IFDIR | 0o755,
        "sections": stat.S_IFDIR | 0o755,
    }
    assert {name: s.st_mode for name, s in listing.items()} == expected
    check_module_formats(top)
    # sections/ reads need CAP_SYSLOG for the address: as root, a module-area address
    text = (top / "sections/.text").read_text()
    assert re.fullmatch(r"0xffffffffc[0-9a-f]{7}\n", text)
    out = mount.sh("readlink sys/module/foo/drivers/platform:foo", check=True)
    assert out.stdout == "../../../bus/platform/drivers/foo\n"


def check_module_formats(top: Path) -> None:
    """What any loaded module's directory shows, fake or real."""
    assert int((top / "coresize").read_text()) % 4096 == 0
    assert (top / "initsize").read_text() == "0\n"  # init memory freed once live
    assert (top / "initstate").read_text() == "live\n"
    assert re.fullmatch(r"-?\d+\n", (top / "refcnt").read_text())
    assert re.fullmatch(r"[A-Z]*\n", (top / "taint").read_text())
    for name in ("coresize", "initsize", "initstate", "refcnt", "taint", "uevent"):
        assert os.lstat(top / name).st_size == 4096, name
    if (top / "srcversion").exists():
        assert re.fullmatch(r"[0-9A-F]{23}\n", (top / "srcversion").read_text())
    for section in (top / "sections").iterdir():
        s = os.lstat(section)
        assert (s.st_mode, s.st_size) == (stat.S_IFREG | 0o400, 19), section.name
    if (top / "notes").exists():
        for note in (top / "notes").iterdir():
            s = os.lstat(note)
            assert s.st_mode == stat.S_IFREG | 0o444, note.name
            assert s.st_size == len(note.read_bytes()), note.name


def real_loadable_modules() -> list[Path]:
    """This machine's loaded modules: built-in ones have no ``initstate``."""
    return sorted(p.parent for p in Path("/sys/module").glob("*/initstate"))


def test_module_directory_matches_this_machines_loaded_modules(mount: Mount) -> None:
    """Every file the fake shares with a real loaded module has its mode and size; the real
    ones pass the same format checks. The fake's set comes from kernel/module/sysfs.c, not
    from this machine."""
    real = real_loadable_modules()
    if not real:
        pytest.skip("this machine has no loadable module loaded (no /sys/module/*/initstate)")
    fake = mount.path / "sys/module/foo"
    fake_names = {p.name for p in fake.iterdir()} - {"drivers"}
    for top in real[:20]:
        check_module_formats(top)
        for name in fake_names & {p.name for p in top.iterdir()}:
            a, b = os.lstat(fake / name), os.lstat(top / name)
            assert stat.S_IFMT(a.st_mode) == stat.S_IFMT(b.st_mode), (top, name)
            assert stat.S_IMODE(a.st_mode) == stat.S_IMODE(b.st_mode), (top, name)
            if stat.S_ISREG(a.st_mode):
                assert a.st_size == b.st_size, (top, name)


def test_proc_modules_agrees_with_sys_module(mount: Mount) -> None:
    """module_total_size() is coresize once the init regions are freed, and the address is
    the text section's."""
    lines = {line.split()[0]: line.split() for line in mount.read("proc/modules").splitlines()}
    for name, fields in lines.items():
        top = mount.path / "sys/module" / name
        assert fields[1] == (top / "coresize").read_text().strip(), name
        assert fields[5] == (top / "sections/.text").read_text().strip(), name
