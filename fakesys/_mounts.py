"""Finding and detaching mounts without forking (no ``umount`` or ``fusermount3`` child):
a wedged FUSE mount can hang a forked child in FLUSH, and cleanup must not hang."""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

MNT_DETACH = 2

# show_mountinfo() writes paths with seq_path_root(..., " \t\n\\"): those four bytes become
# a backslash and three octal digits; every other byte, UTF-8 or not, is written as it is.
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def _unescape(field: bytes) -> bytes:
    return _OCTAL_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), field)


def mounted_fstype(mountpoint: str | Path) -> str | None:
    """The file system type mounted exactly on ``mountpoint``, from /proc/self/mountinfo.

    Paths are compared as bytes, so any name the file system allows matches."""
    target = os.fsencode(os.path.realpath(mountpoint))
    fstype = None
    with open("/proc/self/mountinfo", "rb") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            if _unescape(fields[4]) == target:
                # the last mount on a path wins
                fstype = os.fsdecode(_unescape(fields[fields.index(b"-") + 1]))
    return fstype


def detach(mountpoint: str | Path) -> None:
    """umount2(MNT_DETACH)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(os.fsencode(mountpoint), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(mountpoint))
