"""The floor of the stack: a pyfuse3 file system of two files, cached and served like fakesys.

Same options, same timeouts, direct_io; no tree, no engine. Anything fakesys costs above this
is its own overhead. The attribute sits at the same depth as the one it is compared with
(``sys/devices/platform/foo.0/modalias``), so path walks cost the same on both sides; ``data``
(``--data-mib`` MiB of zeros, 0 by default) is what a dump is compared with, and answers each
read with as many bytes as asked.

    python bench/floorfs.py MOUNTPOINT [--data-mib N]
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import stat

import pyfuse3
import trio

CONTENT = b"platform:foo\n"
PATH = ("sys", "devices", "platform", "foo.0", "modalias")
# inode n + 1 is the n-th component of PATH, below inode n
CHILDREN = {(i + 1, name.encode()): i + 2 for i, name in enumerate(PATH)}
FILE_INO = len(PATH) + 1
DATA_INO = FILE_INO + 1
CHILDREN[(pyfuse3.ROOT_INODE, b"data")] = DATA_INO


class FloorOperations(pyfuse3.Operations):
    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = ino
        is_file = ino in (FILE_INO, DATA_INO)
        attr.st_mode = (stat.S_IFREG | 0o444) if is_file else (stat.S_IFDIR | 0o755)
        attr.st_size = {FILE_INO: 4096, DATA_INO: len(self.data)}.get(ino, 0)
        attr.entry_timeout = attr.attr_timeout = 1.0
        return attr

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        ino = CHILDREN.get((parent_inode, name))
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(ino)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(inode)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        return pyfuse3.FileInfo(fh=inode, direct_io=True, keep_cache=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        content = self.data if fh == DATA_INO else CONTENT
        return content[off : off + size]


async def serve() -> None:
    async with trio.open_nursery() as nursery:

        async def stop_on_sigterm() -> None:
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async for _ in signals:
                    pyfuse3.terminate()
                    return

        nursery.start_soon(stop_on_sigterm)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mountpoint")
    parser.add_argument("--data-mib", type=int, default=0)
    args = parser.parse_args()
    options = set(pyfuse3.default_options) | {"fsname=floorfs"}
    pyfuse3.init(FloorOperations(bytes(args.data_mib << 20)), args.mountpoint, options)
    print("mounted", flush=True)
    try:
        trio.run(serve)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
