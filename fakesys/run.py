"""``fakesys run -- COMMAND``: run a program on the fake machine.

The command runs in a private mount namespace and, unless ``--host-network``, a network
namespace of its own with only ``lo`` (up). Nothing outside them changes. In them:

* ``/sys`` is the fake tree, ``/proc/sys/kernel/tainted`` the fake taint, and ``/proc/modules``
  the fake machine's modules (``lsmod``). procfs cannot be given a file it lacks, so on a host
  kernel built without loadable modules there is no /proc/modules to replace, and lsmod fails
  as it does on that host.
* ``/dev`` is a fresh tmpfs with the host's standard nodes bound in (:data:`STANDARD_DEV`: null,
  zero, tty, pts/, shm/, ...; no host hardware) and the fake machine's nodes, which appear and
  go with their devices, before the uevent that announces them, as with devtmpfs: the daemon
  keeps them (:mod:`fakesys.dev_mirror`). No file is created in the host's devtmpfs.
* ``/run`` is a tmpfs with the host's entries bound back in, except ``udev/``, which is the
  fake machine's: it has ``control``, which libudev takes as the sign that udevd runs (without
  it, udev-group monitors get nothing), and no database of the host's devices.
* Every uevent is broadcast on netlink, on the kernel group and, as udevd would, on the udev
  group (:mod:`fakesys.netlink`), so ``udevadm monitor``, libudev and pyudev monitors see the
  fake machine's events. The host's own kernel events reach the kernel group too, as in a
  rootful container. With ``--host-network`` nothing is broadcast: it would reach the host's
  udevd.

Limitations: it needs CAP_SYS_ADMIN (root, or a user namespace that grants it) for the
namespaces and mounts; udev tools also need ``SYSTEMD_DEVICE_VERIFY_SYSFS=0`` because the tree
is not a sysfs file system; nothing answers on ``/run/udev/control`` (``udevadm control``
fails, ``udevadm settle`` returns at once).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ._mounts import MS_BIND, MS_PRIVATE, MS_REC, bind, detach, mount, mounted_fstype
from .harness import FakesysMount

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

#: What every Linux system has in /dev, whatever its hardware (the OCI runtime's default
#: devices and mounts, plus fuse and the syslog socket).
STANDARD_DEV = frozenset(
    {
        "console", "core", "fd", "full", "fuse", "hugepages", "log", "mqueue", "null",
        "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom", "zero",
    }
)  # fmt: skip

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


def enter_private_namespace(network: bool) -> None:
    """A mount namespace, and with ``network`` a network namespace with ``lo`` up."""
    flags = CLONE_NEWNS | (CLONE_NEWNET if network else 0)
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise NamespaceError(
            f"cannot make a private mount namespace (unshare: {os.strerror(err)}); "
            "run as root, or inside a user namespace that has CAP_SYS_ADMIN"
        )
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    if network:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", IFF_UP))


def shadow(directory: Path, real: Path, keep: Callable[[str], bool]) -> None:
    """Put a tmpfs on ``directory`` and bind the entries of ``real`` (its old contents, bound
    elsewhere) that ``keep`` accepts back in; symlinks are copied."""
    mount("tmpfs", directory, "tmpfs", 0, "mode=755")
    for entry in sorted(real.iterdir()):
        if not keep(entry.name):
            continue
        target = directory / entry.name
        if entry.is_symlink():
            target.symlink_to(os.readlink(entry))
        else:
            bind(entry, target)


def make_udev_run_dir(run: Path) -> None:
    """The fake machine's /run/udev, with the ``control`` that tells libudev udevd runs."""
    udev = run / "udev"
    udev.mkdir(0o755)
    (udev / "control").touch(0o600)


def run(scenario: str | None, command: Sequence[str], host_network: bool = False) -> int:
    enter_private_namespace(network=not host_network)
    # Not a TemporaryDirectory: its cleanup would walk into the binds of the real /dev and /run
    # and delete the host's files. Every mount is detached first, and only empty directories
    # are removed.
    tmp = Path(tempfile.mkdtemp(prefix="fakesys-run-"))
    real = {name: tmp / f"real-{name}" for name in ("dev", "run")}
    mount_: FakesysMount | None = None
    try:
        try:
            for name, place in real.items():
                place.mkdir()
                mount(f"/{name}", place, None, MS_BIND | MS_REC)
            shadow(Path("/dev"), real["dev"], lambda name: name in STANDARD_DEV)
            shadow(Path("/run"), real["run"], lambda name: name != "udev")
            make_udev_run_dir(Path("/run"))
            options = ["--mirror-dev", "/dev"] + ([] if host_network else ["--netlink"])
            mount_ = FakesysMount.start(tmp / "mnt", scenario, tmp / "daemon.stderr", options)
            mount(mount_.path / "sys", "/sys", None, MS_BIND)
            bind(mount_.path / "proc/sys/kernel/tainted", Path("/proc/sys/kernel/tainted"))
            if Path("/proc/modules").exists():
                bind(mount_.path / "proc/modules", Path("/proc/modules"))
        except OSError as e:
            raise NamespaceError(e.strerror or str(e)) from None
        try:
            return subprocess.run(list(command), check=False).returncode
        except OSError as e:  # found and executable, but execve() refused it (ENOEXEC, ...)
            print(f"fakesys: {command[0]}: {e.strerror}", file=sys.stderr)
            return EXIT_CANNOT_EXECUTE
    finally:
        for place in real.values():
            if mounted_fstype(place) is not None:
                detach(place)
        if mount_ is not None:
            mount_.stop()
        for leftover in (*real.values(), tmp / "mnt"):
            with contextlib.suppress(OSError):
                leftover.rmdir()  # never rmtree: a directory still mounted stays
        with contextlib.suppress(OSError):
            (tmp / "daemon.stderr").unlink()
        with contextlib.suppress(OSError):
            tmp.rmdir()


def main(scenario: str | None, command: Sequence[str], host_network: bool = False) -> int:
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
        return run(scenario, command, host_network)
    except NamespaceError as e:
        print(f"fakesys run: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        print(f"fakesys run: {e}", file=sys.stderr)
        return 1
