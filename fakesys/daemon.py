"""The mount: boot a scenario, serve it with FUSE, and shut down cleanly on a signal.

Shutdown on SIGTERM, SIGINT or SIGHUP: blocked reads are woken (they answer ENODEV), pyfuse3
stops taking requests, in-flight handlers get a grace period, and the mount is removed. The
mount uses ``auto_unmount``, so even a SIGKILL of the daemon leaves no dead mount behind; a
dead ``fuse.fakesys`` mount left by an older daemon on the target is detached at start.

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

import errno
import gc
import logging
import os
import signal
import subprocess
import sys
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
    try:
        os.makedirs(mountpoint, exist_ok=True)
    except OSError as e:
        raise MountError(f"{mountpoint}: {e.strerror}") from None
    if not os.path.isdir(mountpoint):
        raise MountError(f"{mountpoint}: not a directory")


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
        try:
            pyfuse3.init(operations, mountpoint, mount_options(debug_fuse))
        except RuntimeError as e:  # fuse_session_new() or fuse_session_mount() failed
            raise MountFailed(f"cannot mount on {mountpoint}: {e} (is /dev/fuse usable?)") from None
        mirror = None
        if mirror_dev is not None:
            mirror = DevMirror(Path(mountpoint, "dev"), Path(mirror_dev), invalidator)
        try:
            async with trio.open_nursery() as fuse:
                fuse.start_soon(invalidator.run)
                fuse.start_soon(operations.interrupts.run)
                fuse.start_soon(_stop_on_signal, operations, fuse.cancel_scope, mountpoint, keep)
                fuse.start_soon(_ready, kernel, mirror, f"{scenario.source} on {mountpoint}")
                await pyfuse3.main(min_tasks=1, max_tasks=MAX_TASKS)
                fuse.cancel_scope.cancel()
        finally:
            operations.drop_poll_handles()
            invalidator.close(SHUTDOWN_GRACE)
            pyfuse3.close(unmount=True)
        engine.cancel_scope.cancel()


async def _ready(kernel: Kernel, mirror: DevMirror | None, what: str) -> None:
    """Say that the mount serves, once the mirrored /dev (whose binds need the file system
    served) shows the nodes."""
    if mirror is not None:
        await mirror.start(kernel)
    print(f"fakesys: mounted {what}", flush=True)


async def _stop_on_signal(
    operations: Operations, cancel_scope: trio.CancelScope, mountpoint: str, keep: list[object]
) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
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
) -> int:
    try:
        clear_stale_mount(mountpoint)
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
