"""Parsing helpers with the kernel's exact rules (lib/string.c, lib/kstrtox.c, lib/vsprintf.c).

sysfs store callbacks get raw bytes; how they parse them decides which inputs the shell can
use (``echo`` adds a newline, ``echo -n`` and IGT do not), so each helper keeps the quirks of
its kernel twin.
"""

from __future__ import annotations

import errno
import re

from ..kernfs import ErrnoError


def sysfs_streq(a: str, b: str) -> bool:
    """Equal, except that one trailing newline on either side is ignored (lib/string.c)."""
    return a.removesuffix("\n") == b.removesuffix("\n")


def buf_to_str(buf: bytes) -> str:
    """The store buffer as kernel C code sees it: text up to the first NUL."""
    return buf.split(b"\0", 1)[0].decode("latin-1")


_KSTRTO_PREFIX = re.compile(r"^(0[xX](?=[0-9a-fA-F])|0(?=[0-7]))?")


def kstrtoull(text: str, base: int = 0) -> int:
    """kstrtoull(): the whole string must be a number, one trailing newline allowed.

    Base 0 picks 16 for ``0x``, 8 for a leading ``0``, else 10; a leading ``+`` is accepted.
    Anything else, including spaces, is EINVAL; a value over 64 bits is ERANGE.
    """
    s = text.removesuffix("\n")
    s = s.removeprefix("+")
    if base == 0:
        if s[:2].lower() == "0x" and len(s) > 2:
            base, s = 16, s[2:]
        elif s.startswith("0") and len(s) > 1:
            base, s = 8, s[1:]
        else:
            base = 10
    elif base == 16 and s[:2].lower() == "0x":
        s = s[2:]
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"[:base]
    if not s or any(c not in digits for c in s.lower()):
        raise ErrnoError(errno.EINVAL)
    value = int(s, base)
    if value >= 1 << 64:
        raise ErrnoError(errno.ERANGE)
    return value


def kstrtoul(text: str, base: int = 0) -> int:
    return kstrtoull(text, base)


def kstrtobool(text: str) -> bool:
    """kstrtobool(): looks at the first one or two characters only (lib/kstrtox.c)."""
    if not text:
        raise ErrnoError(errno.EINVAL)
    first = text[0]
    if first in "yY1":
        return True
    if first in "nN0":
        return False
    if first in "oO" and len(text) > 1:
        if text[1] in "nN":
            return True
        if text[1] in "fF":
            return False
    raise ErrnoError(errno.EINVAL)


def simple_strtol(text: str, base: int = 10) -> int:
    """simple_strtol(): parse a leading number, stop at the first non-digit, 0 if none."""
    match = re.match(r"[-+]?[0-9]+" if base == 10 else r"[-+]?[0-9a-fA-F]+", text)
    return int(match.group(0), base) if match else 0


def kstrtoint(text: str, base: int = 0) -> int:
    """kstrtoint(): as kstrtoull() with an optional ``-``; outside an int is ERANGE."""
    negative = text.startswith("-")
    if negative and text[1:2] == "+":  # kstrtoll() hands what follows "-" to _kstrtoull()
        raise ErrnoError(errno.EINVAL)
    magnitude = kstrtoull(text[1:] if negative else text, base)
    value = -magnitude if negative else magnitude
    if not -(2**31) <= value < 2**31:
        raise ErrnoError(errno.ERANGE)
    return value
