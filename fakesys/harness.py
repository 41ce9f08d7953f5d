"""A fakesys daemon in a subprocess, and the helpers to use its tree from another process.

Used by the pytest plugin and by ``fakesys run``. Stopping never forks: SIGTERM, a lazy
unmount through umount2(), then SIGKILL.
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._mounts import detach, mounted_fstype

READY_TIMEOUT = 20.0
KMSG_RECORD_MAX = 8192
CONTROL = "sys/kernel/debug/fakesys"
#: More than any one event of the stream takes (each read returns one event).
UEVENT_MAX = 65536


@dataclass(frozen=True)
class Uevent:
    """One event of the uevent stream, as ``udevadm monitor --kernel --property`` shows it."""

    action: str
    devpath: str
    subsystem: str
    #: every ``KEY=value`` of the event, ACTION, DEVPATH, SUBSYSTEM and SEQNUM included
    env: dict[str, str]

    @classmethod
    def parse(cls, text: str) -> Uevent:
        """``KERNEL[time] action devpath (subsystem)`` then one ``KEY=value`` a line."""
        env = dict(line.split("=", 1) for line in text.splitlines()[1:] if "=" in line)
        return cls(env["ACTION"], env["DEVPATH"], env["SUBSYSTEM"], env)


def fuse_usable() -> bool:
    """Whether this process can open /dev/fuse."""
    try:
        fd = os.open("/dev/fuse", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


class FakesysMount:
    """A mounted fakesys tree and a daemon process that serves it."""

    def __init__(self, path: Path, process: subprocess.Popen[str], stderr_path: Path) -> None:
        self.path = path
        self.process = process
        self.stderr_path = stderr_path

    @classmethod
    def start(
        cls,
        mountpoint: Path,
        scenario: str | None = None,
        stderr_path: Path | None = None,
        options: Sequence[str] = (),
        *,
        prefix: Sequence[str] = (),
    ) -> FakesysMount:
        """Start a daemon on ``mountpoint`` (made if it does not exist) and wait until it has
        mounted. ``options`` go to ``fakesys mount``; ``prefix`` runs it through another
        command, such as ``setpriv`` to mount as another user (the command must exec the
        daemon, so that signals reach it)."""
        with contextlib.suppress(FileExistsError):  # a stale mount there is the daemon's to clear
            mountpoint.mkdir()
        if stderr_path is None:
            stderr_path = mountpoint.with_name(mountpoint.name + ".stderr")
        args = [*prefix, sys.executable, "-m", "fakesys", "mount", *options, str(mountpoint)]
        if scenario is not None:
            args[len(args) - 1 : len(args) - 1] = ["--scenario", scenario]
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert process.stdout is not None
        mount = cls(mountpoint, process, stderr_path)
        try:
            ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
            line = process.stdout.readline() if ready else ""
        except BaseException:
            mount.stop()
            raise
        if not line.startswith("fakesys: mounted"):
            mount.stop()
            raise RuntimeError(f"fakesys did not mount: {line!r} {stderr_path.read_text()}")
        return mount

    def stop(self) -> int | None:
        """SIGTERM and wait; then make sure nothing is left. Returns the daemon's exit status,
        or None if it had to be killed. Never forks."""
        status: int | None = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            status = self.process.wait(timeout=10)
        if mounted_fstype(self.path) is not None:
            detach(self.path)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return status

    def daemon_stderr(self) -> str:
        return self.stderr_path.read_text()

    # -- the tree --

    def __truediv__(self, relative: str) -> Path:
        return self.path / relative

    def read(self, relative: str) -> str:
        """The text of a file of the tree (one open, one read to EOF)."""
        return (self.path / relative).read_text()

    def write(self, relative: str, text: str) -> None:
        """One write(2) of ``text``, as ``echo -n`` would do it."""
        fd = os.open(self.path / relative, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def wait_for(self, relative: str, timeout: float = 5.0) -> bool:
        """Wait until the path exists (a symlink counts); False on timeout."""
        return wait_until(lambda: os.path.lexists(self.path / relative), timeout)

    def wait_gone(self, relative: str, timeout: float = 5.0) -> bool:
        """Wait until the path does not exist; False on timeout."""
        return wait_until(lambda: not os.path.lexists(self.path / relative), timeout)

    def taint(self) -> int:
        return int(self.read("proc/sys/kernel/tainted"))

    def kmsg(self, since: int = 0) -> list[str]:
        """The kernel log records with a sequence number of ``since`` or more, in the
        /dev/kmsg format (dictionary lines included, the final newline not)."""
        fd = os.open(self.path / "dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        records = []
        try:
            while True:
                try:
                    record = os.read(fd, KMSG_RECORD_MAX).decode()
                except BlockingIOError:
                    break
                except BrokenPipeError:  # records were overwritten: go on from the oldest
                    continue
                if int(record.split(",", 2)[1]) >= since:
                    records.append(record.removesuffix("\n"))
        finally:
            os.close(fd)
        return records

    def kmsg_text(self, since: int = 0) -> list[str]:
        """The messages of the log (without headers and dictionaries)."""
        return [r.split(";", 1)[1].split("\n", 1)[0] for r in self.kmsg(since)]

    def kmsg_mark(self) -> int:
        """The sequence number the next record will get: pass it to :meth:`kmsg` later."""
        records = self.kmsg()
        return int(records[-1].split(",", 2)[1]) + 1 if records else 0

    # -- the control plane --

    def advance_clock(self, seconds: int) -> None:
        """Move the engine's clock ``seconds`` ahead; returns once the timeouts that fell due
        (a dump's expiry, a delay) have run."""
        self.write(f"{CONTROL}/advance_clock", str(seconds))

    @contextlib.contextmanager
    def uevents(self) -> Iterator[list[Uevent]]:
        """The uevents sent while the ``with`` block runs, in a list filled when it ends::

            with fakesys.uevents() as events:
                fakesys.write("sys/bus/platform/drivers/foo/unbind", "foo.0")
            assert [e.action for e in events] == ["unbind"]

        The stream is opened when the block begins (it carries only what comes after) and
        read to its end when the block ends: an event of work still in flight then (a dump
        deleted asynchronously) is not in the list, so wait in the block for what causes it.
        """
        fd = os.open(self.path / CONTROL / "uevents", os.O_RDONLY | os.O_NONBLOCK)
        try:
            events: list[Uevent] = []
            yield events
            while True:
                try:
                    events.append(Uevent.parse(os.read(fd, UEVENT_MAX).decode()))
                except BlockingIOError:
                    break
        finally:
            os.close(fd)

    # -- running programs in the tree --

    def sh(self, script: str, *, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with bash, in the mount's root."""
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
            check=False,
        )


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 20 ms until it holds (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
