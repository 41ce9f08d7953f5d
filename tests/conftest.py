"""Fixtures: a real mount in a subprocess, and shell helpers to drive it.

The daemon runs as ``python -m fakesys mount`` in its own process; tests talk to the tree only
through real programs (bash, cat, python clients in their own processes), never through the
engine. Teardown is SIGTERM, then a lazy unmount through umount2() (no fork: a wedged mount
would hang a forked child in FLUSH), then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fakesys.daemon import detach, mounted_fstype

READY_TIMEOUT = 20.0


def fuse_usable() -> bool:
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


@dataclass
class Mount:
    path: Path
    process: subprocess.Popen[str]
    stderr_path: Path

    def sh(self, script: str, *, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash in the mount's root."""
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    def python(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run a Python client in its own process, in the mount's root."""
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=self.path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def read(self, rel: str) -> str:
        return self.sh(f"cat {rel}", check=True).stdout

    def kmsg(self) -> list[str]:
        """All kernel log records, as /dev/kmsg gives them."""
        out = self.python(
            """
            import os
            fd = os.open("dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            while True:
                try:
                    print(os.read(fd, 8192).decode(), end="")
                except BlockingIOError:
                    break
            """
        )
        assert out.returncode == 0, out.stderr
        return [line for line in out.stdout.splitlines() if not line.startswith(" ")]

    def kmsg_text(self) -> list[str]:
        """The messages of the kernel log, without the record headers."""
        return [line.split(";", 1)[1] for line in self.kmsg()]

    def daemon_stderr(self) -> str:
        return self.stderr_path.read_text()


def start_mount(mnt: Path, stderr_path: Path, scenario: str | None = None) -> Mount:
    args = [sys.executable, "-m", "fakesys", "mount", str(mnt)]
    if scenario is not None:
        args[4:4] = ["--scenario", scenario]
    stderr = stderr_path.open("w")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
    stderr.close()
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("fakesys: mounted"):
        process.kill()
        process.wait()
        process.stdout.close()
        pytest.fail(f"the daemon did not mount: {line!r} {stderr_path.read_text()}")
    return Mount(mnt, process, stderr_path)


def stop_mount(mount: Mount) -> int | None:
    """SIGTERM and wait; returns the exit status, or None if it had to be killed."""
    status: int | None = None
    if mount.process.poll() is None:
        mount.process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        status = mount.process.wait(timeout=10)
    if mounted_fstype(str(mount.path)) is not None:
        detach(str(mount.path))
    if mount.process.poll() is None:
        mount.process.kill()
        mount.process.wait()
    if mount.process.stdout is not None:
        mount.process.stdout.close()
    return status


@pytest.fixture
def scenario() -> str | None:
    """The scenario the ``mount`` fixture mounts; tests override it with a parametrization
    or a fixture of the same name."""
    return None


@pytest.fixture
def mount(tmp_path: Path, scenario: str | None) -> Iterator[Mount]:
    if not fuse_usable():
        pytest.skip("no usable /dev/fuse on this machine")
    m = start_mount(tmp_path / "mnt", tmp_path / "daemon.stderr", scenario)
    try:
        yield m
    finally:
        stop_mount(m)
    # The daemon must never have logged an unexpected exception.
    assert "Traceback" not in m.daemon_stderr(), m.daemon_stderr()


def wait_until(predicate: object, timeout: float = 5.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
