"""``fakesys run``: unmodified programs see the fake machine, and the host is untouched."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import fuse_usable

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")


def fakesys_run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fakesys", "run", "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
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


def test_the_exit_status_is_the_commands_and_the_host_is_untouched() -> None:
    before = sorted(os.listdir("/dev"))
    out = fakesys_run("sh", "-c", "echo foo.0 > /sys/bus/platform/drivers/foo/unbind; exit 7")
    assert out.returncode == 7, out.stderr
    assert sorted(os.listdir("/dev")) == before
    assert not Path("/sys/bus/platform/drivers/foo").exists()  # the host's /sys is real
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith("fakesys-run-")]


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
