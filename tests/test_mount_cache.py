"""The kernel caches entries and attributes for long; every change reaches it at once.

One test per rule of the invalidation (fakesys/fuse/_invalidator.py): each warms the kernel's
cache first, changes the tree with a write, and looks with a real program right after the
write returned, in the same shell.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import Mount, wait_until

FOO = "sys/bus/platform/drivers/foo"
GPU = "sys/devices/pci0000:00/0000:00:02.0"
GPU_LINK = "sys/bus/pci/devices/0000:00:02.0"
HOLD = "sys/kernel/debug/fakesys/hold/unbind_devres"


def warm(mount: Mount, *paths: str) -> None:
    mount.sh(f"ls -lR {' '.join(paths)} > /dev/null", check=True)


def test_a_removed_directory_is_gone_at_once(mount: Mount) -> None:
    warm(mount, GPU, "sys/bus/pci/devices/")
    out = mount.sh(
        f"echo 1 > {GPU}/remove; test -e {GPU}/vendor && echo file; test -e {GPU} && echo dir;"
        f" test -L {GPU_LINK} && echo link; ls sys/bus/pci/devices | wc -l",
        check=True,
    )
    assert out.stdout == "0\n"


def test_a_new_device_appears_at_once(mount: Mount) -> None:
    mount.sh(f"echo 1 > {GPU}/remove", check=True)
    out = mount.sh(f"echo 1 > sys/bus/pci/rescan; cat {GPU}/vendor; readlink {GPU_LINK}")
    assert out.stdout == "0x1234\n../../../devices/pci0000:00/0000:00:02.0\n"


def test_a_removed_link_is_gone_and_a_new_one_seen_at_once(mount: Mount) -> None:
    warm(mount, "sys/devices/platform/foo.0", FOO)
    gone = mount.sh(
        f"echo foo.0 > {FOO}/unbind; test -L sys/devices/platform/foo.0/driver && echo driver;"
        f" test -L {FOO}/foo.0 && echo device; grep DRIVER sys/devices/platform/foo.0/uevent"
    )
    assert gone.stdout == ""
    back = mount.sh(f"echo foo.0 > {FOO}/bind; readlink sys/devices/platform/foo.0/driver")
    assert back.stdout == "../../../bus/platform/drivers/foo\n"


def test_the_link_count_of_a_directory_follows_its_subdirectories(mount: Mount) -> None:
    parent = "sys/devices/pci0000:00"
    before = os.stat(mount / parent).st_nlink
    out = mount.sh(f"echo 1 > {GPU}/remove; stat -c %h {parent}", check=True)
    assert int(out.stdout) == before - 1
    out = mount.sh(f"echo 1 > sys/bus/pci/rescan; stat -c %h {parent}", check=True)
    assert int(out.stdout) == before


def test_a_directory_removed_with_a_file_open_inside_leaves_the_log_clean(mount: Mount) -> None:
    # The kernel cannot mark a directory dead while a file in it is open (the writer's own
    # `remove`, and here `vendor` too): the notice fails with ENOTEMPTY, which is expected.
    # The rescan's write returns after every notice submitted before, the removal's included.
    out = mount.sh(
        f"exec 3<{GPU}/vendor; echo 1 > {GPU}/remove; test -e {GPU} && echo dir;"
        " cat <&3; exec 3<&-; echo 1 > sys/bus/pci/rescan",
    )
    assert out.stdout == ""
    assert "No such device" in out.stderr
    assert "invalidation" not in mount.daemon_stderr()


def test_a_write_never_waits_for_an_unrelated_one(mount: Mount) -> None:
    # A PCI `remove` stopped inside the unbind of its driver has already removed its own
    # `remove` file, whose inode lock its write(2) holds. An unrelated bind must finish, and
    # its effect be visible at once, while that write is still stopped.
    warm(mount, "sys/devices/platform/foo.1", GPU)
    mount.write(HOLD, "1")
    remover = subprocess.Popen(["bash", "-c", f"echo 1 > {GPU}/remove"], cwd=mount.path)
    try:
        assert wait_until(lambda: mount.read(HOLD) == "held\n", 10)
        out = mount.sh(
            f"echo foo.1 > {FOO}/bind; readlink sys/devices/platform/foo.1/driver; cat {HOLD}"
        )
        assert out.stdout == "../../../bus/platform/drivers/foo\nheld\n"
    finally:
        mount.write(HOLD, "0")
        assert remover.wait(timeout=30) == 0
    assert not (mount / GPU).exists()
    assert "invalidation" not in mount.daemon_stderr()


# Text attributes are never served from the kernel's page cache: there a read is bounded by
# the cached size, and a read shorter than the page makes the kernel shrink that size, so
# `stat -c %s` and `ls -l` would show the length of the text instead of sysfs's 4096.


def test_an_attribute_is_4096_bytes_to_stat_before_and_after_a_read(mount: Mount) -> None:
    out = mount.sh(
        f"stat -c %s {GPU}/vendor; cat {GPU}/vendor; stat -c %s {GPU}/vendor;"
        f" cat {GPU}/vendor {GPU}/vendor; stat -c %s {GPU}/vendor",
        check=True,
    )
    assert out.stdout == "4096\n0x1234\n4096\n0x1234\n0x1234\n4096\n"


def test_a_removed_attribute_reads_enodev_through_a_held_descriptor(
    mount: Mount,
) -> None:
    fd = os.open(mount / GPU / "vendor", os.O_RDONLY)
    try:
        assert os.read(fd, 4096) == b"0x1234\n"
        mount.write(f"{GPU}/remove", "1")
        with pytest.raises(OSError, match="No such device"):
            os.pread(fd, 4096, 0)
    finally:
        os.close(fd)


def test_an_attribute_reread_through_a_held_descriptor_shows_the_change(
    mount: Mount,
) -> None:
    override = "sys/devices/platform/foo.0/driver_override"
    fd = os.open(mount / override, os.O_RDONLY)
    try:
        assert os.read(fd, 4096) == b"(null)\n"
        mount.write(override, "foo")
        assert os.pread(fd, 4096, 0) == b"foo\n"
    finally:
        os.close(fd)
