"""``/proc/modules`` in the tree: the kernel's format, live use counts, and addresses only for
an opener that may see kernel pointers."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from fakesys import scenario

from .conftest import Mount, wait_until

LINE = re.compile(r"^(\S+) (\d+) (\d+) (\S+) (Live|Loading|Unloading) 0x([0-9a-f]{16})$")


def _modules(text: str) -> dict[str, tuple[str, ...]]:
    lines = [LINE.match(line) for line in text.splitlines()]
    assert all(lines), text
    return {m.group(1): m.groups()[1:] for m in lines if m}


@pytest.mark.parametrize("fakesys", ["usb-hotplug"], indirect=True)
def test_proc_modules_shows_use_counts_as_refcnt_does(mount: Mount) -> None:
    assert oct(os.stat(mount / "proc/modules").st_mode & 0o777) == "0o444"
    size, refcnt, holders, state, address = _modules(mount.read("proc/modules"))["fakeserial"]
    assert (refcnt, holders, state) == ("0", "-", "Live")
    assert int(size) % 4096 == 0
    assert address.startswith("ffffffffc")  # root sees the module area
    fd = os.open(mount / "dev/ttyUSB0", os.O_RDONLY)
    try:
        refcnt = _modules(mount.read("proc/modules"))["fakeserial"][1]
        assert refcnt == mount.read("sys/module/fakeserial/refcnt").strip()
        assert int(refcnt) > 0
    finally:
        os.close(fd)
    assert wait_until(lambda: _modules(mount.read("proc/modules"))["fakeserial"][1] == "0")


@pytest.mark.parametrize("fakesys", ["usb-hotplug"], indirect=True)
def test_proc_modules_hides_addresses_from_unprivileged_readers(mount: Mount) -> None:
    os.chmod(mount.path.parent, 0o755)  # the fixture's directory, for the reader to pass
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat",
         mount / "proc/modules"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )  # fmt: skip
    assert _modules(out.stdout)["fakeserial"][4] == "0" * 16


def test_proc_modules_lists_the_newest_first_with_holders(mount: Mount) -> None:
    modules = _modules(mount.read("proc/modules"))
    assert list(modules) == list(reversed(scenario.load(None).modules))  # loaded in order
    for name, (_, _, holders, _, _) in modules.items():
        listed = sorted(os.listdir(mount / f"sys/module/{name}/holders"))
        assert holders == ("".join(f"{h}," for h in listed) or "-")
