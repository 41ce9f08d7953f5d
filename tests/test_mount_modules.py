"""``/proc/modules`` in the tree: the kernel's format, live use counts, and addresses only for
an opener that may see kernel pointers."""

from __future__ import annotations

import os
import re
import shutil
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
    assert list(modules) == list(reversed(scenario.load(None).module_names))  # loaded in order
    for name, (_, _, holders, _, _) in modules.items():
        listed = sorted(os.listdir(mount / f"sys/module/{name}/holders"))
        assert holders == ("".join(f"{h}," for h in listed) or "-")


LSMOD_IN_A_ROOT_OF_ITS_OWN = """
set -e
root=$(mktemp -d)
mount -t tmpfs root "$root"
mkdir "$root/usr" "$root/etc" "$root/sys" "$root/proc"
mount --rbind /usr "$root/usr"
mount --bind /etc "$root/etc"
for top in bin sbin lib lib64; do
    if [ -L /$top ]; then ln -s "$(readlink /$top)" "$root/$top"
    elif [ -d /$top ]; then mkdir "$root/$top"; mount --rbind /$top "$root/$top"; fi
done
mount --bind "$MNT/sys" "$root/sys"
touch "$root/proc/modules"
mount --bind "$MNT/proc/modules" "$root/proc/modules"
chroot "$root" lsmod
exec 3< "$MNT/dev/ttyUSB0"
chroot "$root" lsmod
"""


@pytest.mark.skipif(shutil.which("lsmod") is None, reason="lsmod missing: scripts/setup")
@pytest.mark.parametrize("fakesys", ["usb-hotplug"], indirect=True)
def test_lsmod_reads_the_trees_modules_and_use_counts(mount: Mount) -> None:
    """The real lsmod on the tree's /proc/modules and /sys/module, in a root where they are the
    only ones (this works whether or not the host kernel has a /proc/modules)."""
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c",
         LSMOD_IN_A_ROOT_OF_ITS_OWN],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "MNT": str(mount.path)},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    size = _modules(mount.read("proc/modules"))["fakeserial"][0]
    header = "Module                  Size  Used by"
    assert lines[:3] == [header, f"fakeserial          {size:>8}  0", header]
    assert re.fullmatch(rf"fakeserial          {size:>8}  [1-9]\d*", lines[3])  # the open node
    assert len(lines) == 4
