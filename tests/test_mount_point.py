"""The mount point: every mistake gets one line and a non-zero exit, and a tree already
mounted is found whatever the name of the directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakesys._mounts import mounted_fstype

from .conftest import Mount, fuse_usable, wait_until

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")


def fakesys_mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakesys", "mount", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# /proc/self/mountinfo writes UTF-8 as it is and escapes space, tab, newline and backslash
@pytest.mark.parametrize("name", ["café", "two words", "tab\there", "back\\slash"])
def test_a_second_mount_on_a_live_tree_is_refused_whatever_its_name(
    tmp_path: Path, name: str
) -> None:
    mnt = tmp_path / name
    mnt.mkdir()
    m = Mount.start(mnt, stderr_path=tmp_path / "err")
    try:
        assert mounted_fstype(mnt) == "fuse.fakesys"
        second = fakesys_mount(str(mnt))
        assert second.returncode == 1
        assert second.stderr == f"fakesys: {mnt}: a running fakesys is already mounted there\n"
    finally:
        m.stop()
    assert wait_until(lambda: mounted_fstype(mnt) is None)
