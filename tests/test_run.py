"""``fakesys run``: unmodified programs see the fake machine, and the host is untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import fuse_usable

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")


def fakesys_run(*command: str, tmpdir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    return subprocess.run(
        [sys.executable, "-m", "fakesys", "run", "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_readlink_of_the_pci_driver() -> None:
    out = fakesys_run("sh", "-c", "readlink /sys/bus/pci/devices/*/driver")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "../../../bus/pci/drivers/fakegpu\n"


def test_lspci_sees_the_fake_gpu_and_dev_has_both_kinds_of_node() -> None:
    out = fakesys_run(
        "sh",
        "-c",
        "lspci -nk 2>/dev/null; test -c /dev/null && test -f /dev/devm0 && echo nodes-ok;"
        " cat /proc/sys/kernel/tainted",
    )
    assert out.returncode == 0, out.stderr
    assert "00:02.0 0300: 1234:1111 (rev 02)" in out.stdout
    assert "Kernel driver in use: fakegpu" in out.stdout
    assert out.stdout.endswith("nodes-ok\n0\n")


def test_the_exit_status_is_the_commands_and_the_host_is_untouched(tmp_path: Path) -> None:
    before = sorted(os.listdir("/dev"))
    # A temporary directory of its own, so that concurrent runs elsewhere cannot be mistaken
    # for leftovers of this one.
    out = fakesys_run(
        "sh", "-c", "echo foo.0 > /sys/bus/platform/drivers/foo/unbind; exit 7", tmpdir=tmp_path
    )
    assert out.returncode == 7, out.stderr
    assert sorted(os.listdir("/dev")) == before
    assert not Path("/sys/bus/platform/drivers/foo").exists()  # the host's /sys is real
    assert os.listdir(tmp_path) == []


def test_no_command_is_a_usage_error() -> None:
    out = fakesys_run()
    assert out.returncode == 2
    assert "no command given" in out.stderr


def test_without_cap_sys_admin_the_error_is_clear() -> None:
    out = subprocess.run(
        ["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin",
         sys.executable, "-m", "fakesys", "run", "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stderr.startswith("fakesys run: cannot make a private mount namespace")
    assert "run as root" in out.stderr
