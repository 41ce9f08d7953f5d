"""Making, finding and detaching mounts without forking (no ``mount``, ``umount`` or
``fusermount3`` child): a wedged FUSE mount can hang a forked child in FLUSH, and cleanup must
not hang."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

MNT_DETACH = 2
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


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
