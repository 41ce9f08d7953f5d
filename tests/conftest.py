"""Shared test helpers. The mount itself comes from fakesys's own pytest plugin (the
``fakesys`` fixture, :mod:`fakesys.pytest_plugin`), which is what downstream users get."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from fakesys.harness import wait_until
from fakesys.pytest_plugin import FakesysMount, fuse_usable

Mount = FakesysMount

pytest_plugins = ["pytester"]

__all__ = [
    "Mount",
    "fakesys_command",
    "fuse_usable",
    "run_shell_example",
    "wait_blocked_in_read",
    "wait_until",
]


@pytest.fixture
def mount(fakesys: FakesysMount) -> FakesysMount:
    """The tests' name for the plugin's fixture."""
    return fakesys


def fakesys_command(
    *args: str, prefix: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m fakesys ARGS`` run to its end, its output kept; ``prefix`` runs it through
    another command (``setpriv`` to run it as another user)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "fakesys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


# read(2)'s number, as /proc/<pid>/syscall shows the call a task sleeps in
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(os.uname().machine)


def blocked_in_read(pid: int) -> bool:
    """Whether the process sleeps in read(2) (any syscall where the number is unknown)."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
            call = f.read().split(" ", 1)[0].strip()
    except OSError:
        return False
    if call in ("running", "-1", ""):
        return False
    return READ_SYSCALL is None or call == READ_SYSCALL


def wait_blocked_in_read(pid: int, timeout: float = 10.0) -> None:
    assert wait_until(lambda: blocked_in_read(pid), timeout), f"{pid} never blocked in read"


def run_shell_example(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A shell example (of the README) run with bash in ``cwd``, with this environment's
    ``fakesys`` and ``python3`` first on the PATH, as a user who installed it has them."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
