"""Making, finding and detaching mounts without forking (no ``mount``, ``umount`` or
``fusermount3`` child): a wedged FUSE mount can hang a forked child in FLUSH, and cleanup must
not hang."""

from __future__ import annotations

import ctypes
import os
import re
from pathlib import Path

MNT_DETACH = 2
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)

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


def mount(
    source: str | Path, target: str | Path, fstype: str | None, flags: int, data: str = ""
) -> None:
    """mount(2); OSError names both paths."""
    result = _libc.mount(
        os.fsencode(source),
        os.fsencode(target),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def bind(source: Path, target: Path, flags: int = MS_REC) -> None:
    """Bind ``source`` on ``target``, making an empty file or directory to mount on."""
    if source.is_dir() and not source.is_symlink():
        target.mkdir(exist_ok=True)
    elif not target.exists():
        target.touch()
    mount(source, target, None, MS_BIND | flags)


def detach(mountpoint: str | Path) -> None:
    """umount2(MNT_DETACH)."""
    if _libc.umount2(os.fsencode(mountpoint), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(mountpoint))
