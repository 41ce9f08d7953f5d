"""The mount: boot a scenario, serve it with FUSE, and shut down cleanly on a signal.

The mount point must be an existing, empty directory (``nonempty`` allows one with contents,
which the mount hides), as mount(8) and libfuse 2 required; it is never created. Shutdown on
SIGTERM, SIGINT or SIGHUP: blocked reads are woken (they answer ENODEV), pyfuse3 stops taking
requests, in-flight handlers get a grace period, and the mount is removed. The mount uses
``auto_unmount``, so even a SIGKILL of the daemon leaves no dead mount behind; a dead
``fuse.fakesys`` mount left by an older daemon on the target is detached at start.

When libfuse cannot mount, what it and its ``fusermount3`` child said (``user has no write
access to mountpoint``) is the reason given, in one line.

For ``fakesys run``, whose namespaces it shares, the daemon also broadcasts every uevent on
netlink (:mod:`fakesys.netlink`) and keeps the namespace's /dev in step with the tree
(:mod:`fakesys.dev_mirror`).

Shutdown takes the same time at any size. Dropping a mount drops the kernel's cache of it,
every dentry and inode (about 2 us each: half a second after a ``find`` over 10,000 devices),
in the process that drops the mount's last reference; a child that holds the mount's root
open and ends with the daemon does that, after the daemon has exited. Nor is the daemon's own
heap freed object by object: once the mount is gone, the process just ends.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pyfuse3
import trio

from ._mounts import detach, mounted_fstype
from .dev_mirror import DevMirror
from .fuse import Invalidator, Operations
from .kernel import Kernel
from .netlink import UeventNetlink
from .scenario import Scenario, ScenarioError, boot

log = logging.getLogger(__name__)

FSTYPE = "fuse.fakesys"
#: Worker tasks pyfuse3 may run at once; each read blocked in a device holds one.
MAX_TASKS = 2000
SHUTDOWN_GRACE = 2.0
#: How long a failed mount waits for fusermount3 to have said why (it exits at once).
FUSERMOUNT_EXIT_TIMEOUT = 5.0


class MountError(Exception):
    """The mount point cannot be used; the message is for the user."""


class MountFailed(Exception):
    """libfuse could not mount; the message is for the user."""


def clear_stale_mount(mountpoint: str) -> None:
    """Detach a dead fakesys mount left on ``mountpoint`` (its daemon is gone, so every
    access fails with ENOTCONN); refuse a live one and any other file system there."""
    while (fstype := mounted_fstype(mountpoint)) is not None:
        if fstype != FSTYPE:
            raise MountError(f"{mountpoint}: a {fstype} file system is mounted there")
        try:
            os.stat(mountpoint)
        except OSError as e:
            if e.errno not in (errno.ENOTCONN, errno.ECONNABORTED):
                raise
        else:
            raise MountError(f"{mountpoint}: a running fakesys is already mounted there")
        log.warning("detaching a stale fakesys mount on %s", mountpoint)
        detach(mountpoint)


def check_mount_point(mountpoint: str, nonempty: bool) -> None:
    """Refuse what mount(8) refuses (a path that does not exist or is not a directory), and a
    directory with contents unless ``nonempty``: a mount would hide them."""
    try:
        st = os.stat(mountpoint)
        if not stat.S_ISDIR(st.st_mode):
            raise MountError(f"{mountpoint}: mount point is not a directory")
        with os.scandir(mountpoint) as entries:
            if not nonempty and next(entries, None) is not None:
                raise MountError(
                    f"{mountpoint}: mount point is not empty "
                    "(--nonempty mounts over its contents, hiding them)"
                )
    except FileNotFoundError:
        raise MountError(f"{mountpoint}: mount point does not exist") from None
    except OSError as e:
        raise MountError(f"{mountpoint}: {e.strerror}") from None


class LibfuseStderr:
    """File descriptor 2 of libfuse and of the ``fusermount3`` it runs, while the mount is
    made: a pipe, held back until :meth:`passed_on` and then copied to the real stderr for as
    long as anyone writes to it (the ``auto_unmount`` helper lives as long as the mount).

    A failed mount's reason is then what they said, and the user sees it once.
    """

    def __init__(self) -> None:
        self._held = bytearray()
        self._lock = threading.Lock()
        self._passing = False
        self._done = threading.Event()
        self._stderr = -1

    @contextlib.contextmanager
    def redirected(self) -> Iterator[None]:
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        self._stderr = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        threading.Thread(target=self._pump, args=(read_end,), daemon=True).start()
        try:
            yield
        finally:
            os.dup2(self._stderr, 2)

    def _pump(self, read_end: int) -> None:
        try:
            while chunk := os.read(read_end, 4096):
                with self._lock:
                    if self._passing:
                        os.write(self._stderr, chunk)
                    else:
                        self._held += chunk
        finally:
            os.close(read_end)
            self._done.set()

    def passed_on(self) -> None:
        """The mount worked: what was said goes out, and so will the rest."""
        with self._lock:
            self._passing = True
            os.write(self._stderr, self._held)
            self._held.clear()

    def reason(self) -> str | None:
        """What was said, once every writer is gone (fusermount3 exits when it fails)."""
        self._done.wait(timeout=FUSERMOUNT_EXIT_TIMEOUT)
        with self._lock:
            lines = [line.strip() for line in self._held.decode(errors="replace").splitlines()]
        said = [line for line in lines if line]
        return "; ".join(said) if said else None


def mount_options(debug_fuse: bool) -> set[str]:
    options = set(pyfuse3.default_options) | {"fsname=fakesys", "subtype=fakesys"}
    options.add("auto_unmount")
    if os.geteuid() == 0:
        # Let every user see the tree, as /sys is visible to all.
        options.add("allow_other")
    if debug_fuse:
        options.add("debug")
    return options


async def serve(
    scenario: Scenario,
    mountpoint: str,
    debug_fuse: bool = False,
    netlink: UeventNetlink | None = None,
    mirror_dev: str | None = None,
    keep: list[object] | None = None,
) -> None:
    """Boot ``scenario`` and serve it on ``mountpoint`` until a signal. What must outlive this
    call until the process ends (the kernel, the child that holds the mount) goes in ``keep``."""
    keep = [] if keep is None else keep
    # The signals are taken from the start and for good, so that one at any moment (during
    # the boot, just after the mount line, a second Ctrl-C while shutting down) unmounts
    # cleanly instead of ending the process with a traceback.
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with trio.open_nursery() as engine:
            # A big machine is hundreds of thousands of objects that live as long as the mount:
            # collecting while they are made costs seconds, and scanning them later, pauses.
            gc.disable()
            try:
                kernel = await boot(scenario, engine, netlink.attach if netlink else None)
            finally:
                gc.freeze()
                gc.enable()
            keep.append(kernel)
            invalidator = Invalidator()
            operations = Operations(kernel.kernfs, invalidator)
            libfuse_stderr = LibfuseStderr()
            try:
                with libfuse_stderr.redirected():
                    pyfuse3.init(operations, mountpoint, mount_options(debug_fuse))
            except RuntimeError as e:  # fuse_session_new() or fuse_session_mount() failed
                reason = libfuse_stderr.reason() or f"{e} (is /dev/fuse usable?)"
                raise MountFailed(f"cannot mount on {mountpoint}: {reason}") from None
            libfuse_stderr.passed_on()
            mirror = None
            if mirror_dev is not None:
                mirror = DevMirror(Path(mountpoint, "dev"), Path(mirror_dev), invalidator)
            try:
                async with trio.open_nursery() as fuse:
                    fuse.start_soon(invalidator.run)
                    fuse.start_soon(operations.interrupts.run)
                    fuse.start_soon(
                        _stop_on_signal, signals, operations, fuse.cancel_scope, mountpoint, keep
                    )
                    fuse.start_soon(_ready, kernel, mirror, f"{scenario.source} on {mountpoint}")
                    await pyfuse3.main(min_tasks=1, max_tasks=MAX_TASKS)
                    fuse.cancel_scope.cancel()
            finally:
                operations.drop_poll_handles()
                invalidator.close(SHUTDOWN_GRACE)
                pyfuse3.close(unmount=True)
            print(f"fakesys: unmounted {mountpoint}", flush=True)
            engine.cancel_scope.cancel()


async def _ready(kernel: Kernel, mirror: DevMirror | None, what: str) -> None:
    """Say that the mount serves, once the mirrored /dev (whose binds need the file system
    served) shows the nodes."""
    if mirror is not None:
        await mirror.start(kernel)
    print(f"fakesys: mounted {what}; Ctrl-C or SIGTERM unmounts", flush=True)


async def _stop_on_signal(
    signals: AsyncIterator[int],
    operations: Operations,
    cancel_scope: trio.CancelScope,
    mountpoint: str,
    keep: list[object],
) -> None:
    async for signum in signals:
        log.info("%s: unmounting", signal.Signals(signum).name)
        operations.interrupts.stop()
        # In a thread: opening the root may ask this file system, which still answers.
        with trio.move_on_after(SHUTDOWN_GRACE):
            try:
                holder = await trio.to_thread.run_sync(
                    _mount_holder, mountpoint, abandon_on_cancel=True
                )
            except OSError as e:
                log.warning("no child to hold the mount while it is dropped: %s", e)
            else:
                keep.append(holder)
        pyfuse3.terminate()
        break
    # pyfuse3.main() returns once the handlers in flight are done; do not wait forever.
    await trio.sleep(SHUTDOWN_GRACE)
    cancel_scope.cancel()


def _mount_holder(mountpoint: str) -> subprocess.Popen[bytes]:
    """A child that holds the mount's root open until this process ends (its stdin is a pipe
    from here), so that it drops the mount's last reference: see the module's docstring."""
    fd = os.open(mountpoint, os.O_PATH | os.O_DIRECTORY)
    try:
        return subprocess.Popen(
            ["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(fd,)
        )
    finally:
        os.close(fd)


def run(
    scenario: Scenario,
    mountpoint: str,
    debug_fuse: bool = False,
    netlink: bool = False,
    mirror_dev: str | None = None,
    nonempty: bool = False,
) -> int:
    try:
        clear_stale_mount(mountpoint)
        check_mount_point(mountpoint, nonempty)
    except (MountError, OSError) as e:
        print(f"fakesys: {e}", file=sys.stderr)
        return 1
    try:
        uevent_netlink = UeventNetlink() if netlink else None
    except OSError as e:
        print(f"fakesys: --netlink: {e.strerror}", file=sys.stderr)
        return 1
    # Errors from the boot or the mount come out of the engine's nursery in a group.
    keep: list[object] = []
    status = 0
    try:
        trio.run(serve, scenario, mountpoint, debug_fuse, uevent_netlink, mirror_dev, keep)
    except* ScenarioError as scenario_errors:
        _report(scenario_errors)
        status = 2
    except* MountFailed as mount_errors:
        _report(mount_errors)
        status = 1
    if status:
        return status
    # The mount is gone; end without freeing the heap (see the module's docstring).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _report(group: BaseExceptionGroup[Exception]) -> None:
    for error in group.exceptions:
        print(f"fakesys: {error}", file=sys.stderr)
