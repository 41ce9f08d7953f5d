"""The error type that carries a kernel errno up to the file system's caller."""

from __future__ import annotations

import os


class ErrnoError(Exception):
    """A callback failed with ``-errno``; the read(2) or write(2) that ran it gets ``errno``.

    Kernel code returns negative errnos; here the callback raises this instead, and the FUSE
    adapter answers the request with the same errno.
    """

    def __init__(self, errno: int) -> None:
        super().__init__(errno, os.strerror(errno))
        self.errno = errno
