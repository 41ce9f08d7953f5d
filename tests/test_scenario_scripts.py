"""The bash scenario scripts: each reproduces a lifetime bug and its fix, checking itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import Mount, fuse_usable

SCRIPTS = sorted((Path(__file__).resolve().parent.parent / "scripts" / "scenarios").glob("0*.sh"))

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")


def run(script: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )


def test_there_is_a_script_for_every_pattern() -> None:
    assert [s.name[:3] for s in SCRIPTS] == ["000", "001", "001", "002", "003", "004"]


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_script_standalone(script: Path) -> None:
    out = run(script)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAIL" not in out.stdout
    assert out.stdout.rstrip().endswith("all expectations met")


def test_scripts_share_one_mount(mount: Mount) -> None:
    env = dict(os.environ, FAKESYS_MOUNT=str(mount.path))
    for script in SCRIPTS:
        out = run(script, env)
        assert out.returncode == 0, f"{script.name}: {out.stdout}{out.stderr}"
    # each script put the machine back as it found it
    assert mount.sh("ls sys/bus/platform/drivers/cdev_devm", check=True).stdout.split() == [
        "bind",
        "cdev_devm.0",
        "module",
        "uevent",
        "unbind",
    ]
