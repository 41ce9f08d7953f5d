"""Finding and detaching mounts without forking (no ``umount`` or ``fusermount3`` child):
a wedged FUSE mount can hang a forked child in FLUSH, and cleanup must not hang."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

MNT_DETACH = 2


def mounted_fstype(mountpoint: str | Path) -> str | None:
    """The file system type mounted exactly on ``mountpoint``, from /proc/self/mountinfo."""
    target = os.path.realpath(mountpoint)
    fstype = None
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            mount_path = fields[4].encode().decode("unicode_escape")
            if mount_path == target:
                fstype = fields[fields.index("-") + 1]  # the last mount on a path wins
    return fstype


def detach(mountpoint: str | Path) -> None:
    """umount2(MNT_DETACH)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(mountpoint), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(mountpoint))
