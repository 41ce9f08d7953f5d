"""The README's workflow for a recording runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fakesys._mounts import mounted_fstype

from .conftest import fuse_usable, run_shell_example

README = Path(__file__).resolve().parent.parent / "README.md"


def workflow() -> str:
    """The first shell block of the README's section on recordings."""
    text = README.read_text()
    section = text[text.index("## Bring your own machine") :]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")
def test_record_mount_unbind_under_an_open_file_and_bind(tmp_path: Path) -> None:
    if not Path("/sys/class/net/eth0/device/driver").exists():
        pytest.skip("the workflow records eth0, and this machine has no eth0 with a driver")
    out = run_shell_example(workflow(), tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("fakesys: mounted nic.toml on mnt;")
    assert "Kernel driver in use:" in out.stdout
    assert "cat: -: No such device\n" in out.stderr
    # after the unbind, no interface and no DRIVER=; after the bind, eth0 again
    assert out.stdout.endswith("\n0\neth0\nfakesys: unmounted mnt\n")
    assert mounted_fstype(tmp_path / "mnt") is None
