"""Contents for simulated device coredumps: reproducible, and made a page at a time, so that a
256 MiB dump is never built whole.

``binary``: byte ``i`` is ``(i % 4093) * 31 % 256`` (4093 is prime, so the pattern never lines
up with pages). ``text``: a header in the style of the msm crash dump (``key: value`` lines,
Documentation/gpu/msm-crash-dump.rst) followed by lines of hex words.
"""

from __future__ import annotations

from dataclasses import dataclass

from fakesys.linux import (
    EINVAL,
    UTS_RELEASE,
    Device,
    ErrnoError,
    Module,
    current_comm,
    dev_driver_string,
    dev_name,
    ktime_get_ns,
)

DUMP_FORMATS = ("binary", "text")
PATTERN_PERIOD = 4093
_PATTERN = bytes((i * 31) % 256 for i in range(PATTERN_PERIOD)) * 2
LINE_SIZE = 64


def pattern_bytes(offset: int, count: int) -> bytes:
    """Bytes ``offset`` to ``offset + count`` of the binary pattern (count ≤ 4093)."""
    start = offset % PATTERN_PERIOD
    return _PATTERN[start : start + count]


@dataclass(frozen=True)
class DumpContent:
    """The bytes of one dump: ``size`` of them, ``header`` first when it is text."""

    size: int
    text: bool
    header: bytes = b""

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
        number, into = divmod(position - len(self.header), LINE_SIZE)
        words = " ".join(f"{(number * 5 + i) * 2654435761 % 2**32:08x}" for i in range(5))
        line = f"  {number * 20:08x}: {words}\n".encode()
        return (line.ljust(LINE_SIZE - 1, b" ")[: LINE_SIZE - 1] + b"\n")[into:]


def dump_content(size: int, fmt: str, dev: Device, module: Module | None) -> DumpContent:
    """A dump of ``dev``, ``size`` bytes in format ``fmt``; a text one starts with what the
    kernel, the module, the device and its driver were, and when and by whom."""
    if fmt not in DUMP_FORMATS:
        raise ErrnoError(EINVAL)
    if fmt != "text":
        return DumpContent(size, False)
    now = ktime_get_ns()
    header = (
        f"kernel: {UTS_RELEASE}\n"
        f"module: {module.name if module is not None else dev_driver_string(dev)}\n"
        f"time: {now // 10**9}.{now % 10**9:09d}\n"
        f"comm: {current_comm()}\n"
        f"device: {dev_name(dev)}\n"
        f"driver: {dev_driver_string(dev)}\n"
        "registers:\n"
    )
    return DumpContent(size, True, header.encode()[:size])
