"""The kernel log (kernel/printk/printk.c) and its reader, ``/dev/kmsg``.

Records carry a sequence number, a level and facility, a timestamp from the engine's clock and,
for dev_printk() messages, the SUBSYSTEM and DEVICE dictionary. /dev/kmsg shows them in the
kernel's record format, one record per read(2)::

    <prefix>,<seq>,<usec>,<flag>;<message with \\xNN escapes>
     SUBSYSTEM=platform
     DEVICE=+platform:foo.0

A reader starts at the oldest record still in the buffer, gets EPIPE once if records it had not
read were overwritten, EINVAL if its buffer cannot hold the next record, and blocks (or gets
EAGAIN with O_NONBLOCK) when it has read everything. A write adds one record, facility LOG_USER
and level 4 unless it starts with ``<N>``.

Limitations: no rate limiting of writers (``printk.devkmsg``), and lseek(2) is not seen by the
file system, so SEEK_END/SEEK_DATA cannot be offered.
"""

from __future__ import annotations

import collections
import errno
import select
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from ..kernfs import ErrnoError, FileOps, OpenFile

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = (
    range(8)
)
LOG_USER = 1
DEFAULT_MESSAGE_LOGLEVEL = 4  # CONFIG_MESSAGE_LOGLEVEL_DEFAULT
LOG_BUF_LEN = 1 << 17  # CONFIG_LOG_BUF_SHIFT=17
PRINTKRB_RECORD_MAX = 1024  # kernel/printk/internal.h


@dataclass(frozen=True)
class Record:
    seq: int
    ts_usec: int
    level: int
    facility: int
    text: str
    dictionary: tuple[tuple[str, str], ...] = field(default=())

    def format(self) -> bytes:
        """The record as /dev/kmsg gives it (info_print_ext_header, msg_print_ext_body)."""
        prefix = (self.facility << 3) | self.level
        out = [f"{prefix},{self.seq},{self.ts_usec},-;", _escape(self.text), "\n"]
        for key, value in self.dictionary:
            out.append(f" {key}={_escape(value)}\n")
        return "".join(out).encode("latin-1", errors="replace")


def _escape(text: str) -> str:
    return "".join(f"\\x{ord(c):02x}" if c < " " or c >= "\x7f" or c == "\\" else c for c in text)


class PrintkBuffer:
    """The ring of records. ``clock_ns`` gives the time since boot."""

    def __init__(self, clock_ns: Callable[[], int], capacity: int = LOG_BUF_LEN) -> None:
        self._clock_ns = clock_ns
        self._capacity = capacity
        self._records: collections.deque[Record] = collections.deque()
        self._bytes = 0
        self.next_seq = 0
        self._new_record = trio.Event()
        #: Called after each record, e.g. to wake pollers of /dev/kmsg.
        self.on_record: list[Callable[[], None]] = []

    @property
    def first_seq(self) -> int:
        return self._records[0].seq if self._records else self.next_seq

    def emit(
        self,
        level: int,
        text: str,
        *,
        facility: int = 0,
        dictionary: tuple[tuple[str, str], ...] = (),
    ) -> Record:
        """Store one record; a trailing newline is dropped (vprintk_store)."""
        record = Record(
            self.next_seq,
            self._clock_ns() // 1000,
            level,
            facility,
            text.removesuffix("\n"),
            dictionary,
        )
        self.next_seq += 1
        self._records.append(record)
        self._bytes += len(record.text) + 16
        while self._bytes > self._capacity and len(self._records) > 1:
            dropped = self._records.popleft()
            self._bytes -= len(dropped.text) + 16
        self._new_record.set()
        self._new_record = trio.Event()
        for callback in self.on_record:
            callback()
        return record

    def records(self, since_seq: int = 0) -> list[Record]:
        return [r for r in self._records if r.seq >= since_seq]

    def get(self, seq: int) -> Record | None:
        if not self._records or seq < self.first_seq or seq >= self.next_seq:
            return None
        return self._records[seq - self.first_seq]

    async def wait_for(self, seq: int) -> None:
        while seq >= self.next_seq:
            await self._new_record.wait()

    def text(self) -> str:
        """All records as plain lines, like ``dmesg``'s text without timestamps."""
        return "".join(r.text + "\n" for r in self._records)


class DevKmsg(FileOps):
    """``/dev/kmsg`` (devkmsg_open/read/write/poll in kernel/printk/printk.c)."""

    may_block = True
    seekable = False

    def __init__(self, log: PrintkBuffer) -> None:
        self.log = log

    async def open(self, of: OpenFile) -> None:
        of.private = self.log.first_seq

    async def read(self, of: OpenFile, offset: int, size: int) -> bytes:
        seq = of.private
        assert isinstance(seq, int)
        if seq >= self.log.next_seq:
            if of.nonblocking:
                raise ErrnoError(errno.EAGAIN)
            await self.log.wait_for(seq)
        if seq < self.log.first_seq:
            # Our next record was overwritten: report it once, then go on from the oldest.
            of.private = self.log.first_seq
            raise ErrnoError(errno.EPIPE)
        record = self.log.get(seq)
        assert record is not None
        data = record.format()
        if len(data) > size:
            raise ErrnoError(errno.EINVAL)
        of.private = seq + 1
        return data

    async def write(self, of: OpenFile, offset: int, data: bytes) -> int:
        if len(data) > PRINTKRB_RECORD_MAX:
            raise ErrnoError(errno.EINVAL)
        text = data.decode("utf-8", errors="replace")
        level, facility = DEFAULT_MESSAGE_LOGLEVEL, LOG_USER
        if text.startswith("<"):
            end = text.find(">")
            number = text[1:end]
            if end > 1 and number.isdigit():
                value = int(number)
                level = value & 7
                facility = (value >> 3) or LOG_USER
                text = text[end + 1 :]
        self.log.emit(level, text, facility=facility)
        return len(data)

    def poll(self, of: OpenFile) -> int:
        seq = of.private
        assert isinstance(seq, int)
        mask = 0
        if seq < self.log.next_seq:
            mask |= select.POLLIN | select.POLLRDNORM
            if seq < self.log.first_seq:
                mask |= select.POLLERR | select.POLLPRI
        return mask
