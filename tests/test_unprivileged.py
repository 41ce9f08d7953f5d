"""A tree mounted by an ordinary user: that user plays root's part in it.

Run as root, the tests mount as uid 65534 through ``setpriv``; run as another user, as that
user. Mounting as an ordinary user needs the setuid ``fusermount3``.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Mount, fakesys_command, fuse_usable

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")

NOBODY = 65534


@dataclass
class User:
    uid: int
    gid: int
    #: what runs a command as the user (empty when the tests already run as one)
    prefix: list[str]
    #: a directory of theirs
    home: Path

    def sh(self, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        """``script`` run by the user in ``cwd`` (which they alone may enter: a FUSE mount
        without allow_other is closed even to root)."""
        return subprocess.run(
            [*self.prefix, "bash", "-c", 'cd "$1" && eval "$2"', "bash", str(cwd), script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def _skip_unless_possible(prefix: list[str]) -> None:
    fusermount = shutil.which("fusermount3")
    if fusermount is None or not os.stat(fusermount).st_mode & stat.S_ISUID:
        pytest.skip("no setuid fusermount3: an ordinary user cannot mount FUSE here")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import fakesys.daemon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:  # the checkout or the interpreter is closed to other users
        said = probe.stderr.strip().splitlines()[-1:] or [f"status {probe.returncode}"]
        pytest.skip(f"an ordinary user cannot import fakesys with {sys.executable}: {said[0]}")


@pytest.fixture
def user() -> Iterator[User]:
    if os.geteuid() != 0:
        prefix: list[str] = []
        uid, gid = os.getuid(), os.getgid()
    elif shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: no ordinary user to mount as")
    else:
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        uid = gid = NOBODY
    _skip_unless_possible(prefix)
    # Not pytest's tmp_path: its parents are closed to other users.
    home = Path(tempfile.mkdtemp(prefix="fakesys-user-"))
    os.chmod(home, 0o755)
    if os.geteuid() == 0:
        os.chown(home, uid, gid)
    try:
        yield User(uid, gid, prefix, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def user_mount(user: User) -> Iterator[Mount]:
    mnt = user.home / "mnt"
    mnt.mkdir()
    os.chown(mnt, user.uid, user.gid)
    mount = Mount.start(mnt, stderr_path=user.home / "err", prefix=user.prefix)
    try:
        yield mount
    finally:
        mount.stop()
    assert "Traceback" not in mount.daemon_stderr()


def test_the_files_are_the_users(user: User, user_mount: Mount) -> None:
    out = user.sh(
        "stat -c '%u:%g %a %n' sys/bus/platform/drivers/foo/unbind dev/devm0 "
        "sys/kernel/debug/fakesys/advance_clock proc/sys/kernel/tainted",
        user_mount.path,
    )
    owner = f"{user.uid}:{user.gid}"
    assert out.stdout.splitlines() == [
        f"{owner} 200 sys/bus/platform/drivers/foo/unbind",
        f"{owner} 666 dev/devm0",
        f"{owner} 200 sys/kernel/debug/fakesys/advance_clock",
        f"{owner} 644 proc/sys/kernel/tainted",
    ], out.stderr


def test_the_tours_writes_work_for_the_user(user: User, user_mount: Mount) -> None:
    out = user.sh(
        "set -e\n"
        "echo foo.0 > sys/bus/platform/drivers/foo/unbind\n"
        "test ! -e sys/devices/platform/foo.0/driver\n"
        "echo foo.0 > sys/bus/platform/drivers/foo/bind\n"
        "readlink sys/devices/platform/foo.0/driver\n"
        "echo 1 > sys/kernel/debug/fakesys/devices/0000:00:02.0/hang\n"
        "until [ -e sys/class/devcoredump/devcd1 ]; do sleep 0.05; done\n"
        "ls sys/class/devcoredump\n",
        user_mount.path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "../../../bus/platform/drivers/foo\ndevcd1\ndisabled\n"


def test_root_only_checks_let_the_user_through(user: User, user_mount: Mount) -> None:
    """pci_read_config() gives the first 64 bytes to a caller without CAP_SYS_ADMIN and the
    whole config space to root; proc_taint() wants CAP_SYS_ADMIN: the mounting user is root
    here."""
    config = "sys/bus/pci/devices/0000:00:02.0/config"
    out = user.sh(
        f"wc -c < {config}; stat -c %s {config}\n"
        "echo 512 > proc/sys/kernel/tainted && cat proc/sys/kernel/tainted\n",
        user_mount.path,
    )
    read, size, taint = out.stdout.split()
    assert int(read) == int(size) > 64, out.stderr
    assert taint == "512"
    assert out.stderr == ""


def test_fusermount3s_reason_is_the_one_line_given(user: User) -> None:
    """A mount point the user may not write: fusermount3 says why, and that is what is shown."""
    theirs_not = user.home / "roots"
    theirs_not.mkdir()
    if os.geteuid() != 0:
        theirs_not.chmod(0o555)  # as good as someone else's
    else:
        os.chown(theirs_not, 0, 0)
    out = fakesys_command("mount", str(theirs_not), prefix=user.prefix)
    assert out.returncode == 1
    assert out.stderr == (
        f"fakesys: cannot mount on {theirs_not}: fusermount3: user has no write access to "
        f"mountpoint {theirs_not}\n"
    )
    assert out.stdout == ""
