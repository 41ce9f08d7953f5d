"""Taint flags (kernel/panic.c, include/linux/panic.h) and /proc/sys/kernel/tainted."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ..kernfs import Attribute, ErrnoError, current_caller
from .lib import buf_to_str
from .printk import KERN_WARNING
from .sched import current

if TYPE_CHECKING:
    from .kernel import Kernel

# (c_true, c_false, description) in bit order; TAINT_FLAGS_COUNT is 20.
TAINT_FLAGS = (
    ("P", "G", "PROPRIETARY_MODULE"),
    ("F", " ", "FORCED_MODULE"),
    ("S", " ", "CPU_OUT_OF_SPEC"),
    ("R", " ", "FORCED_RMMOD"),
    ("M", " ", "MACHINE_CHECK"),
    ("B", " ", "BAD_PAGE"),
    ("U", " ", "USER"),
    ("D", " ", "DIE"),
    ("A", " ", "OVERRIDDEN_ACPI_TABLE"),
    ("W", " ", "WARN"),
    ("C", " ", "CRAP"),
    ("I", " ", "FIRMWARE_WORKAROUND"),
    ("O", " ", "OOT_MODULE"),
    ("E", " ", "UNSIGNED_MODULE"),
    ("L", " ", "SOFTLOCKUP"),
    ("K", " ", "LIVEPATCH"),
    ("X", " ", "AUX"),
    ("T", " ", "RANDSTRUCT"),
    ("N", " ", "TEST"),
    ("J", " ", "FWCTL"),
)
TAINT_BAD_PAGE = 5
TAINT_DIE = 7
TAINT_WARN = 9


class Taint:
    """The global ``tainted_mask``. Bits are only ever added, as in the kernel, except by
    :meth:`clear`, which stands for a reboot."""

    def __init__(self) -> None:
        self.mask = 0

    def clear(self) -> None:
        """Forget the taint: only the control plane does this (``debug_locks``)."""
        self.mask = 0

    def add(self, flag: int) -> None:
        self.mask |= 1 << flag

    def test(self, flag: int) -> bool:
        return bool(self.mask >> flag & 1)

    def print_tainted(self) -> str:
        """``Not tainted`` or ``Tainted: `` and one character per flag (print_tainted())."""
        if not self.mask:
            return "Not tainted"
        return "Tainted: " + "".join(
            t if self.test(i) else f for i, (t, f, _) in enumerate(TAINT_FLAGS)
        )

    def print_tainted_verbose(self) -> str:
        """The ``[B]=BAD_PAGE, [W]=WARN`` form."""
        return ", ".join(
            f"[{t}]={desc}" for i, (t, _, desc) in enumerate(TAINT_FLAGS) if self.test(i)
        )

    def proc_attribute(self) -> Attribute:
        """``/proc/sys/kernel/tainted``: decimal, writable by CAP_SYS_ADMIN to add flags.

        proc_taint() parses with proc_doulongvec_minmax (surrounding blanks allowed, one
        unsigned decimal) and calls add_taint() for each of the known bits in the value.
        """

        def show() -> str:
            return f"{self.mask}\n"

        async def store(buf: bytes) -> int:
            caller = current_caller.get()
            if caller is not None and caller.uid != 0:
                raise ErrnoError(errno.EPERM)
            text = buf_to_str(buf).strip()
            if not text.isdigit():
                raise ErrnoError(errno.EINVAL)
            value = int(text)
            if value >= 1 << 64:
                raise ErrnoError(errno.EINVAL)
            for flag in range(len(TAINT_FLAGS)):
                if value >> flag & 1:
                    self.add(flag)
            return len(buf)

        return Attribute(show, store, sysfs=False)


def warn(kernel: Kernel, message: str, where: str, function: str) -> None:
    """WARN(): the "cut here" report of kernel/panic.c __warn(), then taint W.

    ``where`` is the ``file:line`` of the WARN, ``function`` the function it is in (the
    innermost frame of the trace)."""
    from .kallsyms import symbol  # noqa: PLC0415 (kallsyms imports nothing of this module)
    from .stacktrace import stack  # noqa: PLC0415

    log = kernel.log
    log.emit(KERN_WARNING, "------------[ cut here ]------------")
    log.emit(KERN_WARNING, message)
    task = current()
    log.emit(KERN_WARNING, f"WARNING: CPU: 0 PID: {task.pid} at {where} {symbol(function)}")
    log.emit(KERN_WARNING, f"Modules linked in: {' '.join(reversed(list(kernel.modules)))}")
    for line in kernel.dump_stack_header():
        log.emit(KERN_WARNING, line)
    log.emit(KERN_WARNING, "Call Trace:")
    log.emit(KERN_WARNING, " <TASK>")
    for frame in stack():
        log.emit(KERN_WARNING, f" {frame}")
    log.emit(KERN_WARNING, " </TASK>")
    log.emit(KERN_WARNING, "---[ end trace 0000000000000000 ]---")
    # Added last, so the report's own CPU line shows the taint from before (LOCKDEP_STILL_OK).
    kernel.taint.add(TAINT_WARN)
