"""Symbol names as ``%pS`` prints them (kernel/kallsyms.c): ``name+0xoff/0xsize [module]``.

The simulation has no machine code, so offsets and sizes are derived from the name: stable from
run to run, so reports can be compared, and shaped like real ones.
"""

from __future__ import annotations

import zlib


def symbol(name: str, module: str | None = None) -> str:
    digest = zlib.crc32(name.encode())
    size = 0x40 + (digest & 0x3F0)
    offset = 0x4 + ((digest >> 12) % (size - 0x8) & ~0x3)
    text = f"{name}+{offset:#x}/{size:#x}"
    return f"{text} [{module}]" if module else text
