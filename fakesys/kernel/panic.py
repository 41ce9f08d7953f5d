"""Taint flags (kernel/panic.c, include/linux/panic.h), /proc/sys/kernel/tainted, WARN() and
the x86 page-fault oops (arch/x86/mm/fault.c, arch/x86/kernel/dumpstack.c).

An oops ends the task that took it (make_task_dead(SIGKILL)): the process is sent SIGKILL, as
the kernel kills it, and the engine's call unwinds with :class:`TaskKilled`. Limitations: the
register dump is left out (there are no registers), and so are the code bytes of a function
that is still there; what the dead task held is released as the call unwinds, where the kernel
would leak it.
"""

from __future__ import annotations

import errno
import os
import signal
import zlib
from typing import TYPE_CHECKING, NoReturn

from ..kernfs import Attribute, ErrnoError, current_caller
from .lib import buf_to_str
from .printk import KERN_ALERT, KERN_INFO, KERN_WARNING
from .sched import Task, current

if TYPE_CHECKING:
    from .kernel import Kernel
    from .module import Module

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


def print_modules(kernel: Kernel) -> str:
    """print_modules(): the loaded modules, newest first, and the one unloaded last."""
    line = f"Modules linked in: {' '.join(reversed(list(kernel.modules)))}"
    if kernel.last_unloaded_module:
        line += f" [last unloaded: {kernel.last_unloaded_module}]"
    return line


def warn(
    kernel: Kernel, message: str, where: str, function: str, module: str | None = None
) -> None:
    """WARN(): the "cut here" report of kernel/panic.c __warn(), then taint W.

    ``where`` is the ``file:line`` of the WARN, ``function`` the function it is in (the
    innermost frame of the trace) and ``module`` the module that function is in, if any."""
    from .kallsyms import symbol  # noqa: PLC0415 (kallsyms imports nothing of this module)
    from .stacktrace import stack  # noqa: PLC0415

    log = kernel.log
    log.emit(KERN_WARNING, "------------[ cut here ]------------")
    log.emit(KERN_WARNING, message)
    task = current()
    rip = symbol(function, module)
    log.emit(KERN_WARNING, f"WARNING: CPU: 0 PID: {task.pid} at {where} {rip}")
    log.emit(KERN_WARNING, print_modules(kernel))
    # show_regs(): the CPU line, RIP (the registers are left out), then the trace unwound
    # from the registers, which starts at the caller of the function at RIP
    for line in kernel.dump_stack_header():
        log.emit(KERN_WARNING, line)
    log.emit(KERN_WARNING, f"RIP: 0010:{rip}")
    log.emit(KERN_WARNING, "Call Trace:")
    log.emit(KERN_WARNING, " <TASK>")
    trace = stack()
    for frame in trace[1:] if trace and trace[0] == rip else trace:
        log.emit(KERN_WARNING, f" {frame}")
    log.emit(KERN_WARNING, " </TASK>")
    log.emit(KERN_WARNING, "---[ end trace 0000000000000000 ]---")
    # Added last, so the report's own CPU line shows the taint from before (LOCKDEP_STILL_OK).
    kernel.taint.add(TAINT_WARN)


# The page-fault error code (arch/x86/include/asm/trap_pf.h).
X86_PF_WRITE = 1 << 1
X86_PF_INSTR = 1 << 4
PROLOGUE_SIZE = 42  # the code bytes show_opcodes() prints before RIP
_OOPS_FRAMES = (
    "__die",
    "page_fault_oops",
    "kernelmode_fixup_or_oops",
    "__bad_area_nosemaphore",
    "exc_page_fault",
    "asm_exc_page_fault",
)


class TaskKilled(ErrnoError):
    """The task died in an oops: its process was sent SIGKILL, and nothing of the call goes
    on. The errno is only what engine code that catches errors sees."""

    def __init__(self) -> None:
        super().__init__(errno.EINTR)


def module_text_fault(kernel: Kernel, module: Module) -> NoReturn:
    """The task returns into the text of ``module``, which was unloaded: the instruction
    fetch faults at an address kallsyms no longer knows."""
    from .module import MOD_TEXT  # noqa: PLC0415 (module.py is above this one)
    from .stacktrace import current_frames  # noqa: PLC0415

    function = next((name for name, mod in reversed(current_frames()) if mod == module.name), "")
    digest = zlib.crc32(function.encode())
    text = module.layout.mem_base[MOD_TEXT]
    address = text + (digest % module.layout.mem_size[MOD_TEXT] & ~0xF) + (digest >> 16) % 0x10
    page_fault_oops(kernel, address, X86_PF_INSTR, f"{address:#x}", freed=module.name)


def page_fault_oops(
    kernel: Kernel, address: int, error_code: int, rip: str, freed: str | None = None
) -> NoReturn:
    """show_fault_oops(), __die() and oops_end() for a fault at ``address`` of the kernel's
    half with ``rip`` the instruction, as %pS prints it; ``freed`` names an unloaded module
    whose frames the unwinder cannot see. Then the task is killed."""
    from .stacktrace import current_frames, symbolize  # noqa: PLC0415

    log = kernel.log
    task = current()
    log.emit(KERN_ALERT, f"BUG: unable to handle page fault for address: {address:016x}")
    if error_code & X86_PF_INSTR:
        access = "instruction fetch"
    else:
        access = "write access" if error_code & X86_PF_WRITE else "read access"
    log.emit(KERN_ALERT, f"#PF: supervisor {access} in kernel mode")
    log.emit(KERN_ALERT, f"#PF: error_code({error_code:#06x}) - not-present page")
    # dump_pagetable(): the module area's tables are there, the page's entry is not
    log.emit(KERN_INFO, "PGD 3c2e067 P4D 3c2e067 PUD 3c30067 PMD 10a8e4067 PTE 0")
    kernel.die_counter += 1
    # __die_header(), after the "Oops: " of show_fault_oops() (v6.10, Alex Shi)
    header = f"Oops: {error_code:04x} [#{kernel.die_counter}] PREEMPT SMP KASAN NOPTI"
    log.emit(KERN_WARNING, f"Oops: {header}")
    for line in kernel.dump_stack_header():
        log.emit(KERN_WARNING, line)
    summary = [f"RIP: 0010:{rip}"]
    if error_code & X86_PF_INSTR:
        summary.append(f"Code: Unable to access opcode bytes at {address - PROLOGUE_SIZE:#x}.")
    for line in summary:
        log.emit(KERN_WARNING, line)
    log.emit(KERN_WARNING, "Call Trace:")
    log.emit(KERN_WARNING, " <TASK>")
    for name in _OOPS_FRAMES:
        log.emit(KERN_WARNING, f" ? {symbolize(name, None)}")
    lost = False  # the unwinder cannot go through a frame of freed text: guesses after it
    for name, module in reversed(current_frames()):
        if freed is not None and module == freed:
            lost = True
            continue
        log.emit(KERN_WARNING, f" {'? ' if lost else ''}{symbolize(name, module)}")
    log.emit(KERN_WARNING, " </TASK>")
    log.emit(KERN_WARNING, print_modules(kernel))
    log.emit(KERN_WARNING, f"CR2: {address:016x}")
    kernel.taint.add(TAINT_DIE)
    if kernel.lockdep.debug_locks_off():
        log.emit(KERN_WARNING, "Disabling lock debugging due to kernel taint")
    log.emit(KERN_WARNING, "---[ end trace 0000000000000000 ]---")
    for line in summary:  # the executive summary, in case the oops scrolled away
        log.emit(KERN_WARNING, line)
    make_task_dead(task)


def make_task_dead(task: Task) -> NoReturn:
    """The task does not come back: its process is killed, as do_exit() ends it. The engine's
    own process (a test driving the engine directly) is never signalled."""
    if task.pid > 1 and task.pid != os.getpid():
        try:
            with open(f"/proc/{task.pid}/comm", encoding="utf-8", errors="replace") as f:
                same = f.read().strip()[:15] == task.comm
            if same:
                os.kill(task.pid, signal.SIGKILL)
        except OSError:
            pass  # it is gone already
    raise TaskKilled
