"""KASAN reports (mm/kasan/report.c) for the use-after-free the simulation detects.

A report is printed line by line at KERN_ERR, framed by the ``=====`` rulers, and ends by
adding taint B (end_report()). As in the kernel, only the first report of a boot is printed
unless ``multi_shot`` is set (the ``kasan_multi_shot`` boot parameter).

A slab object's report has its allocation and free tracks, its description, its physical page
as dump_page() prints it (at KERN_WARNING, as __dump_folio() does) and the shadow memory around
the address. Freed module memory is ``vmalloc-out-of-bounds``, as with CONFIG_KASAN_VMALLOC
(vfree() poisons it KASAN_VMALLOC_INVALID), with no description: on x86-64 the module area is
neither the direct map nor vmalloc space. Limitations: the page's numbers (pfn, the kmem_cache
address, the objects of the slab) are derived, as the addresses are, not read from a slab.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .kallsyms import symbol
from .panic import TAINT_BAD_PAGE, Taint
from .printk import KERN_ERR, KERN_WARNING, PrintkBuffer
from .sched import current

if TYPE_CHECKING:
    from .slab import Object, Track

#: The "cache" of an object in a module's memory (vmalloc'ed, not from a slab).
MODULE_MEMORY = "module"

RULER = "=" * 66

_REPORT_FRAMES = ("dump_stack_lvl", "print_report", "kasan_report")
_ALLOC_FRAMES = ("kasan_save_stack", "kasan_save_track", "__kasan_kmalloc")
_FREE_FRAMES = ("kasan_save_stack", "kasan_save_track", "kasan_save_free_info", "__kasan_slab_free")


KASAN_VMALLOC_INVALID = 0xF8
KASAN_SLAB_REDZONE = 0xFC
KASAN_SLAB_FREE = 0xFB
KASAN_SLAB_FREE_META = 0xFA  # the first granule of a freed object holds its free track
GRANULE = 8
ROW = 16 * GRANULE


def shadow_dump(obj: Object, addr: int) -> list[str]:
    """ "Memory state around the buggy address" (print_memory_metadata()): five rows of shadow
    bytes, one per 8-byte granule, the buggy row marked ``>`` and its granule with ``^``.
    Around a freed slab object everything is slab redzone; freed module memory (vmalloc) is
    all invalid."""

    def shadow(granule: int) -> int:
        if obj.cache == MODULE_MEMORY:
            return KASAN_VMALLOC_INVALID
        if not obj.addr <= granule < obj.addr + obj.cache_size:
            return KASAN_SLAB_REDZONE
        return KASAN_SLAB_FREE_META if granule == obj.addr else KASAN_SLAB_FREE

    lines = ["Memory state around the buggy address:"]
    buggy_row = addr - addr % ROW
    for row in range(buggy_row - 2 * ROW, buggy_row + 3 * ROW, ROW):
        marker = ">" if row == buggy_row else " "
        shadows = " ".join(f"{shadow(row + i * GRANULE):02x}" for i in range(ROW // GRANULE))
        lines.append(f"{marker}{row:016x}: {shadows}")
        if row == buggy_row:
            lines.append(" " * (19 + 3 * ((addr - row) // GRANULE)) + "^")
    return lines


class Kasan:
    def __init__(
        self,
        log: PrintkBuffer,
        taint: Taint,
        cpu_line: Callable[[], list[str]],
        debug_locks_off: Callable[[], bool],
    ) -> None:
        self.log = log
        self.taint = taint
        self.multi_shot = False
        self.reported = False
        # The last bad access reported: a read-modify-write of a field (``x += 1``) is one
        # access, as the compiler's single instruction gets one check.
        self._last: tuple[int, tuple[str, ...]] | None = None
        self._cpu_line = cpu_line
        self._debug_locks_off = debug_locks_off

    def reset(self) -> None:
        """No report made yet, as after boot."""
        self.reported = False
        self._last = None

    def _enabled(self) -> bool:
        # report_enabled(): one report per boot unless multi-shot.
        if self.multi_shot:
            return True
        if self.reported:
            return False
        self.reported = True
        return True

    def _print(self, line: str) -> None:
        self.log.emit(KERN_ERR, line)

    def _print_stack(self, frames: tuple[str, ...]) -> None:
        for frame in frames:
            self._print(f" {frame}")

    def _print_track(self, title: str, track: Track, prefix: tuple[str, ...]) -> None:
        self._print(f"{title} by task {track.task.pid}:")
        self._print_stack(tuple(symbol(f) for f in prefix) + track.stack)
        self._print("")

    def _print_head(
        self, obj: Object, bug: str, access: str, stack: tuple[str, ...], tracks: bool = True
    ) -> None:
        """Ruler, bug line, access line, the stack of the bad access and, for a slab object,
        its history."""
        task = current()
        self._print(RULER)
        self._print(f"BUG: KASAN: {bug} in {stack[0] if stack else '0x0'}")
        self._print(f"{access} by task {task.comm}/{task.pid}")
        self._print("")
        for line in self._cpu_line():
            self._print(line)
        self._print("Call Trace:")
        self._print(" <TASK>")
        self._print_stack(tuple(symbol(f) for f in _REPORT_FRAMES) + stack)
        self._print(" </TASK>")
        self._print("")
        if not tracks:
            return
        self._print_track("Allocated", obj.alloc_track, _ALLOC_FRAMES)
        assert obj.free_track is not None
        self._print_track("Freed", obj.free_track, _FREE_FRAMES)

    def report_use_after_free(
        self, obj: Object, offset: int, size: int, *, write: bool, stack: tuple[str, ...]
    ) -> None:
        where = (obj.addr + offset, stack)
        if where == self._last:
            return
        if not self._enabled():
            return
        self._last = where
        access = "Write" if write else "Read"
        addr = obj.addr + offset
        access_line = f"{access} of size {size} at addr {addr:016x}"
        if obj.cache == MODULE_MEMORY:
            # An unloaded module's memory was vfree()d: its shadow is KASAN_VMALLOC_INVALID,
            # and nothing describes the address any more (print_address_description()).
            self._print_head(obj, "vmalloc-out-of-bounds", access_line, stack, tracks=False)
            for line in shadow_dump(obj, addr):
                self._print(line)
            self._print(RULER)
            self._end_report()
            return
        self._print_head(obj, "slab-use-after-free", access_line, stack)
        self._describe_slab_object(obj, offset, "freed ")

    def report_double_free(self, obj: Object, stack: tuple[str, ...]) -> None:
        if not self._enabled():
            return
        self._print_head(obj, "double-free", f"Free of addr {obj.addr:016x}", stack)
        self._describe_slab_object(obj, 0, "")

    def _describe_slab_object(self, obj: Object, offset: int, region_state: str) -> None:
        """The rest of a report on a slab object, after its tracks: describe_object_addr()
        (a freed object's allocation size is unknown, so it is the cache's: the "freed" state
        is only said of a slab-use-after-free), the physical page (dump_page(), at
        KERN_WARNING), the shadow memory, the ruler; then end_report()."""
        cache_size = obj.cache_size
        self._print(f"The buggy address belongs to the object at {obj.addr:016x}")
        self._print(f" which belongs to the cache {obj.cache} of size {cache_size}")
        self._print(f"The buggy address is located {offset} bytes inside of")
        self._print(
            f" {region_state}{cache_size}-byte region "
            f"[{obj.addr:016x}, {obj.addr + cache_size:016x})"
        )
        self._print("")
        self._print("The buggy address belongs to the physical page:")
        from .slab import dump_page  # noqa: PLC0415 (slab imports this module)

        for line in dump_page(obj):
            self.log.emit(KERN_WARNING, line)
        self._print("")
        for line in shadow_dump(obj, obj.addr + offset):
            self._print(line)
        self._print(RULER)
        self._end_report()

    def _end_report(self) -> None:
        # end_report(): add_taint(TAINT_BAD_PAGE, LOCKDEP_NOW_UNRELIABLE); the first taint that
        # turns lock debugging off says so (debug_locks_off() in kernel/panic.c add_taint()).
        self.taint.add(TAINT_BAD_PAGE)
        if self._debug_locks_off():
            self.log.emit(KERN_WARNING, "Disabling lock debugging due to kernel taint")
