"""examples/own-driver: its check.sh reproduces the bug and shows the fix, from a copy of the
directory outside the checkout, with the fakesys command of this installation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import fuse_usable

EXAMPLE = Path(__file__).parent.parent / "examples" / "own-driver"


@pytest.mark.mount
@pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")
def test_check_sh_passes_from_a_copy(tmp_path: Path) -> None:
    copy = tmp_path / "own-driver"
    shutil.copytree(EXAMPLE, copy)
    fakesys = Path(sys.executable).parent / "fakesys"
    out = subprocess.run(
        [str(copy / "check.sh")],
        env={"FAKESYS": str(fakesys), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok: report: BUG: KASAN: slab-use-after-free in thermo_temp_show" in out.stdout
    assert "ok: attribute after unbind: absent" in out.stdout
    assert out.stdout.endswith("all expectations met\n")
