"""Interrupting blocked requests: the stand-in for FUSE_INTERRUPT.

pyfuse3 never tells a handler that its request was interrupted, so a read blocked in the
daemon would leave its caller in D state, deaf even to SIGKILL. Operations that may block
therefore run through :meth:`InterruptWatcher.call`, and one watcher task looks at the
``/proc/<tid>/status`` of every blocked opener now and then: a signal that is pending and
neither blocked nor ignored means the caller wants out, and its operations answer EINTR.

The watcher sweeps every 50 ms, and less often when a sweep itself takes long (hundreds of
blocked readers), so that it never takes more than a fifth of the daemon's time.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pyfuse3
import trio

R = TypeVar("R")

SWEEP_INTERVAL = 0.05
MAX_SHARE = 5  # the sweep period is at least this many times the sweep's own duration


def signal_pending(tid: int) -> bool:
    """True if ``tid`` has a deliverable signal pending; False if it has none or is gone."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{tid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("SigPnd", "ShdPnd", "SigBlk", "SigIgn"):
                    fields[key] = int(value.strip(), 16)
    except (OSError, ValueError):
        return False
    pending = fields.get("SigPnd", 0) | fields.get("ShdPnd", 0)
    return bool(pending & ~fields.get("SigBlk", 0) & ~fields.get("SigIgn", 0))


@dataclass(eq=False)
class _Blocked:
    tid: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    errno: int = errno.EINTR


class InterruptWatcher:
    def __init__(self) -> None:
        self._blocked: set[_Blocked] = set()
        self._stopping = False

    async def call(self, tid: int, operation: Callable[[], Awaitable[R]]) -> R:
        """Run ``operation`` for the process ``tid``: EINTR if that process gets a signal,
        ENODEV if the daemon stops, before it returns."""
        if self._stopping:
            raise pyfuse3.FUSEError(errno.ENODEV)
        blocked = _Blocked(tid)
        self._blocked.add(blocked)
        try:
            with blocked.scope:
                return await operation()
        finally:
            self._blocked.discard(blocked)
        raise pyfuse3.FUSEError(blocked.errno)

    def stop(self) -> None:
        """Wake every blocked operation with ENODEV, and refuse new ones."""
        self._stopping = True
        for blocked in list(self._blocked):
            blocked.errno = errno.ENODEV
            blocked.scope.cancel()

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            by_tid: dict[int, list[_Blocked]] = {}
            for blocked in self._blocked:
                by_tid.setdefault(blocked.tid, []).append(blocked)
            for tid, operations in by_tid.items():
                if signal_pending(tid):
                    for blocked in operations:
                        blocked.scope.cancel()
            spent = time.perf_counter() - started
            await trio.sleep(max(SWEEP_INTERVAL, MAX_SHARE * spent))
