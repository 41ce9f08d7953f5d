"""``fakesys run -- COMMAND``: run a program on the fake machine.

The command runs in a private mount namespace in which the fake tree is ``/sys``, its device
nodes sit in ``/dev`` beside the real standard ones (``null``, ``zero``, ``tty``, ``pts/``,
...), and ``/proc/sys/kernel/tainted`` is the fake taint. Nothing outside the namespace
changes: ``/dev`` there is a fresh tmpfs populated with bind mounts, so no file is created in
the host's devtmpfs.

Limitations: it needs CAP_SYS_ADMIN (root, or a user namespace that grants it) to make the
namespace and the mounts; udev tools additionally need ``SYSTEMD_DEVICE_VERIFY_SYSFS=0``
because the tree is not a sysfs file system.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ._mounts import detach, mounted_fstype
from .harness import FakesysMount

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


# What a shell exits with when it cannot run a command (POSIX "Command Search and Execution").
EXIT_NOT_FOUND = 127
EXIT_CANNOT_EXECUTE = 126


def cannot_run(program: str) -> tuple[int, str] | None:
    """The status and message a shell would give if it could not run ``program``, or None.

    A name without a slash is looked up in PATH; a file found there that is not executable is
    "Permission denied", as bash says."""
    if "/" not in program:
        if shutil.which(program) is not None:
            return None
        if shutil.which(program, mode=os.F_OK) is not None:
            return EXIT_CANNOT_EXECUTE, f"{program}: Permission denied"
        return EXIT_NOT_FOUND, f"{program}: command not found"
    if not os.path.exists(program):
        return EXIT_NOT_FOUND, f"{program}: No such file or directory"
    if os.path.isdir(program):
        return EXIT_CANNOT_EXECUTE, f"{program}: Is a directory"
    if not os.access(program, os.X_OK):
        return EXIT_CANNOT_EXECUTE, f"{program}: Permission denied"
    return None


class NamespaceError(Exception):
    """The namespace or one of its mounts could not be made; the message is for the user."""


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise NamespaceError(f"{what}: {os.strerror(err)}")


def _mount(source: str | Path, target: str | Path, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            os.fsencode(source),
            os.fsencode(target),
            fstype.encode() if fstype else None,
            flags,
            None,
        ),
        f"mount {source} on {target}",
    )


def _bind(source: Path, target: Path) -> None:
    """Bind ``source`` on ``target``, making an empty file or directory to mount on."""
    if source.is_dir() and not source.is_symlink():
        target.mkdir(exist_ok=True)
    elif not target.exists():
        target.touch()
    _mount(source, target, None, MS_BIND | MS_REC)


def enter_private_namespace() -> None:
    try:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    except NamespaceError as e:
        raise NamespaceError(
            f"cannot make a private mount namespace ({e}); "
            "run as root, or inside a user namespace that has CAP_SYS_ADMIN"
        ) from None
    _mount("none", "/", None, MS_REC | MS_PRIVATE)


def populate_dev(real_dev: Path, fake_dev: Path) -> None:
    """A new /dev: the real entries bound back in, then the fake nodes over them."""
    _mount("tmpfs", "/dev", "tmpfs", 0)
    dev = Path("/dev")
    for entry in sorted(real_dev.iterdir()):
        target = dev / entry.name
        if entry.is_symlink():
            target.symlink_to(os.readlink(entry))
        else:
            _bind(entry, target)
    for directory, _, files in os.walk(fake_dev):
        relative = Path(directory).relative_to(fake_dev)
        (dev / relative).mkdir(exist_ok=True)
        for name in files:
            _bind(Path(directory, name), dev / relative / name)


def run(scenario: str | None, command: Sequence[str]) -> int:
    enter_private_namespace()
    # Not a TemporaryDirectory: its cleanup would walk into the bind of the real /dev and
    # delete the host's device nodes. Every mount is detached first, and only empty
    # directories are removed.
    tmp = Path(tempfile.mkdtemp(prefix="fakesys-run-"))
    real_dev = tmp / "real-dev"
    mount: FakesysMount | None = None
    try:
        mount = FakesysMount.start(tmp / "mnt", scenario, tmp / "daemon.stderr")
        real_dev.mkdir()
        _mount("/dev", real_dev, None, MS_BIND | MS_REC)
        populate_dev(real_dev, mount.path / "dev")
        _mount(mount.path / "sys", "/sys", None, MS_BIND)
        _bind(mount.path / "proc/sys/kernel/tainted", Path("/proc/sys/kernel/tainted"))
        try:
            return subprocess.run(list(command), check=False).returncode
        except OSError as e:  # found and executable, but execve() refused it (ENOEXEC, ...)
            print(f"fakesys: {command[0]}: {e.strerror}", file=sys.stderr)
            return EXIT_CANNOT_EXECUTE
    finally:
        if mounted_fstype(real_dev) is not None:
            detach(real_dev)
        if mount is not None:
            mount.stop()
        for leftover in (real_dev, tmp / "mnt"):
            with contextlib.suppress(OSError):
                leftover.rmdir()  # never rmtree: a directory still mounted stays
        with contextlib.suppress(OSError):
            (tmp / "daemon.stderr").unlink()
        with contextlib.suppress(OSError):
            tmp.rmdir()


def main(scenario: str | None, command: Sequence[str]) -> int:
    if not command:
        print("fakesys run: no command given (fakesys run [--scenario S] -- COMMAND...)",
              file=sys.stderr)  # fmt: skip
        return 2
    problem = cannot_run(command[0])
    if problem is not None:  # said before anything is mounted
        status, message = problem
        print(f"fakesys: {message}", file=sys.stderr)
        return status
    try:
        return run(scenario, command)
    except NamespaceError as e:
        print(f"fakesys run: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"fakesys run: {e}", file=sys.stderr)
        return 1
