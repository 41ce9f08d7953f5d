"""The floor of the stack: a pyfuse3 file system of two files, cached and served like fakesys.

Same options, same timeouts, direct_io; no tree, no engine. Anything fakesys costs above this
is its own overhead. The attribute sits at the same depth as the one it is compared with
(``sys/devices/platform/foo.0/modalias``), so path walks cost the same on both sides; ``data``
(``--data-mib`` MiB of zeros, 0 by default) is what a dump is compared with, and answers each
read with as many bytes as asked. ``tree/`` has ``--tree-dirs`` directories of
``--tree-files`` files each, to list as fakesys's tree is listed.

    python bench/floorfs.py MOUNTPOINT [--data-mib N] [--tree-dirs N --tree-files N]
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
TREE_INO = DATA_INO + 1
CHILDREN[(pyfuse3.ROOT_INODE, b"data")] = DATA_INO
CHILDREN[(pyfuse3.ROOT_INODE, b"tree")] = TREE_INO
# Directory i of tree/ is inode TREE_INO + 1 + i * (files + 1), its file j the j + 1-th after.
TIMEOUT = 3600.0  # as fakesys: the kernel caches entries and attributes for long


class FloorOperations(pyfuse3.Operations):
    def __init__(self, data: bytes, tree_dirs: int, tree_files: int) -> None:
        super().__init__()
        self.data = data
        self.tree_dirs = tree_dirs
        self.stride = tree_files + 1

    def _is_tree_dir(self, ino: int) -> bool:
        return ino > TREE_INO and (ino - TREE_INO - 1) % self.stride == 0

    def _attr(self, ino: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = ino
        is_dir = (ino <= TREE_INO and ino not in (FILE_INO, DATA_INO)) or self._is_tree_dir(ino)
        attr.st_mode = (stat.S_IFDIR | 0o755) if is_dir else (stat.S_IFREG | 0o444)
        attr.st_size = len(self.data) if ino == DATA_INO else 0 if is_dir else 4096
        attr.entry_timeout = attr.attr_timeout = TIMEOUT
        return attr

    def _child(self, ino: int, index: int) -> tuple[bytes, int] | None:
        """The index-th entry of directory ``ino``, computed (no list of a big directory)."""
        if ino == TREE_INO:
            if index >= self.tree_dirs:
                return None
            return f"d{index}".encode(), TREE_INO + 1 + index * self.stride
        if self._is_tree_dir(ino):
            return (f"f{index}".encode(), ino + 1 + index) if index < self.stride - 1 else None
        children = [(name, child) for (parent, name), child in CHILDREN.items() if parent == ino]
        return children[index] if index < len(children) else None

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        if parent_inode == TREE_INO or self._is_tree_dir(parent_inode):
            index = int(name[1:]) if name[1:].isdigit() else -1
            found = self._child(parent_inode, index) if index >= 0 else None
            ino = found[1] if found is not None and found[0] == name else None
        else:
            ino = CHILDREN.get((parent_inode, name))
        if ino is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attr(ino)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attr(inode)

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return inode

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        index = start_id
        while (child := self._child(fh, index)) is not None:
            index += 1
            if not pyfuse3.readdir_reply(token, child[0], self._attr(child[1]), index):
                break

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
    parser.add_argument("--tree-dirs", type=int, default=0)
    parser.add_argument("--tree-files", type=int, default=0)
    args = parser.parse_args()
    options = set(pyfuse3.default_options) | {"fsname=floorfs"}
    operations = FloorOperations(bytes(args.data_mib << 20), args.tree_dirs, args.tree_files)
    pyfuse3.init(operations, args.mountpoint, options)
    print("mounted", flush=True)
    try:
        trio.run(serve)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    os.umask(0o022)
    main()
