"""Simulated drivers that dump, in the manner of each era (kernel-abi.md §1).

``legacy`` (before v6.10)
    dev_coredumpm() with the driver's module as owner and a read callback that reads the
    driver's own (devm) state; nothing removes the dump at unbind. Reading it after the unbind
    runs the callback on freed memory; rmmod fails with EWOULDBLOCK while the dump exists.
``put`` (v6.10 to v6.17)
    The driver registers dev_coredump_put() as a devm action in probe (as Xe does), so unbind
    deletes the dump; the core has the pre-fix locking, whose lock cycle lockdep reports.
``fixed`` (the 2025 fix)
    The same driver on the fixed core.
``seed`` (Rodrigo Vivi's unmerged 2024 patch)
    A driver whose dump data stands alone (dev_coredumpv(), like iwlwifi's firmware dumps),
    on the patched core that removes every dump when its failing device unbinds: a driver that
    unbinds and rebinds to recover loses the dump it just took (Johannes Berg's objection).

Contents are reproducible: ``binary`` is byte ``i`` = ``(i % 4093) * 31 % 256``; ``text`` is a
header in the style of the msm crash dump (``key: value`` lines) followed by hex lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .devcoredump import CORE_FIXED, CORE_PRE_FIX, CORE_SEED, DEVCD_TIMEOUT
from .devres import devm_add_action, devm_kzalloc
from .kernel import UTS_RELEASE
from .sched import current
from .slab import Object
from .stacktrace import frame

if TYPE_CHECKING:
    from .core import Device
    from .driver import Driver
    from .module import Module

DUMP_ERAS = {"legacy": CORE_PRE_FIX, "put": CORE_PRE_FIX, "fixed": CORE_FIXED, "seed": CORE_SEED}
DUMP_FORMATS = ("binary", "text")
PATTERN_PERIOD = 4093  # prime, so the pattern never lines up with pages
_PATTERN = bytes((i * 31) % 256 for i in range(PATTERN_PERIOD)) * 2


def pattern_bytes(offset: int, count: int) -> bytes:
    """Bytes ``offset`` to ``offset + count`` of the binary pattern (count ≤ 4093)."""
    start = offset % PATTERN_PERIOD
    return _PATTERN[start : start + count]


@dataclass(frozen=True)
class DumpSpec:
    era: str
    size: int = 1 << 20
    format: str = "binary"
    timeout: float = DEVCD_TIMEOUT


class DumpContent:
    """The bytes of one dump, produced a page at a time (a 256 MiB dump is never built)."""

    def __init__(self, spec: DumpSpec, header: str) -> None:
        self.size = spec.size
        self.text = spec.format == "text"
        self.header = header.encode()[: self.size]

    def read(self, offset: int, count: int) -> bytes:
        """memory_read_from_buffer(): EOF past the end."""
        count = max(0, min(count, self.size - offset))
        out = bytearray()
        while len(out) < count:
            position = offset + len(out)
            if position < len(self.header):
                out += self.header[position : offset + count]
            elif self.text:
                out += self._hex_line(position)[: count - len(out)]
            else:
                out += pattern_bytes(position, min(count - len(out), PATTERN_PERIOD))
        return bytes(out)

    def _hex_line(self, position: int) -> bytes:
        """Hex lines of 64 bytes each after the header, addressed by line."""
        line_size = 64
        body = position - len(self.header)
        number, into = divmod(body, line_size)
        words = " ".join(f"{(number * 5 + i) * 2654435761 % 2**32:08x}" for i in range(5))
        line = f"  {number * 20:08x}: {words}\n".encode()
        line = line.ljust(line_size - 1, b" ")[: line_size - 1] + b"\n"
        return line[into:]


class DumpSupport:
    """The dumping half of a simulated driver."""

    def __init__(self, spec: DumpSpec, module: Module | None) -> None:
        self.spec = spec
        self.module = module
        self.states: dict[Device, Object] = {}

    @property
    def module_name(self) -> str | None:
        return self.module.name if self.module else None

    def probe(self, drv: Driver, dev: Device) -> None:
        """The driver's coredump state, and for ``put``/``fixed`` the devm action that deletes
        the dump at unbind (registered after the state, so it runs before the state goes)."""
        self.states[dev] = devm_kzalloc(dev, 256, f"struct {drv.name}_coredump")
        if self.spec.era in ("put", "fixed"):

            async def fini() -> None:
                await dev.kernel.devcoredump.dev_coredump_put(dev)

            devm_add_action(dev, fini, f"{drv.name}_devcoredump_fini", self.module_name)

    async def coredump(self, drv: Driver, dev: Device) -> None:
        kernel = dev.kernel
        header = self._header(drv, dev)
        content = DumpContent(self.spec, header)
        state = self.states[dev]
        module = self.module_name
        if self.spec.era == "seed":
            # dev_coredumpv(): the data is a standalone copy, no owner is pinned.
            async def read(offset: int, count: int) -> bytes:
                return content.read(offset, count)

            def free() -> None:
                pass

            owner = None
        else:

            async def read(offset: int, count: int) -> bytes:
                with frame(f"{drv.name}_coredump_read", module=module):
                    state.access(0x10, 8, write=False)
                return content.read(offset, count)

            def free() -> None:
                with frame(f"{drv.name}_coredump_free", module=module):
                    state.access(0x10, 8, write=True)

            owner = self.module
        with frame(f"{drv.name}_coredump", module=module):
            await kernel.devcoredump.dev_coredumpm(
                dev, owner, read, free, self.spec.timeout, DUMP_ERAS[self.spec.era]
            )

    def _header(self, drv: Driver, dev: Device) -> str:
        kernel = dev.kernel
        now = kernel.clock.now()
        if self.spec.format != "text":
            return ""
        return (
            f"kernel: {UTS_RELEASE}\n"
            f"module: {self.module_name or drv.name}\n"
            f"time: {int(now)}.{int(now % 1 * 1e9):09d}\n"
            f"comm: {current().comm}\n"
            f"device: {dev.name}\n"
            f"driver: {drv.name}\n"
            "registers:\n"
        )
