"""The mount point: every mistake gets one line and a non-zero exit, and a tree already
mounted is found whatever the name of the directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakesys._mounts import mounted_fstype

from .conftest import Mount, fakesys_command, fuse_usable, wait_until

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")


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
        second = fakesys_command("mount", str(mnt))
        assert second.returncode == 1
        assert second.stderr == f"fakesys: {mnt}: a running fakesys is already mounted there\n"
    finally:
        m.stop()
    assert wait_until(lambda: mounted_fstype(mnt) is None)


def test_a_file_is_not_a_mount_point(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    out = fakesys_command("mount", str(file))
    assert out.returncode == 1
    assert out.stderr == f"fakesys: {file}: mount point is not a directory\n"


def test_a_mount_point_that_does_not_exist_is_refused_and_not_made(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    out = fakesys_command("mount", str(missing))
    assert out.returncode == 1
    assert out.stderr == f"fakesys: {missing}: mount point does not exist\n"
    assert not missing.exists()


def test_a_directory_with_contents_needs_nonempty(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "notes").write_text("mine\n")
    out = fakesys_command("mount", str(mnt))
    assert out.returncode == 1
    assert out.stderr == (
        f"fakesys: {mnt}: mount point is not empty (--nonempty mounts over its contents, "
        "hiding them)\n"
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "fakesys", "mount", "--nonempty", str(mnt)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert daemon.stdout is not None
    try:
        assert daemon.stdout.readline() == (
            f"fakesys: mounted default.toml on {mnt}; Ctrl-C or SIGTERM unmounts\n"
        )
        assert not (mnt / "notes").exists()
        assert (mnt / "sys/bus/platform").is_dir()
    finally:
        daemon.terminate()
        rest, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0
    assert rest == f"fakesys: unmounted {mnt}\n"
    assert (mnt / "notes").read_text() == "mine\n"
