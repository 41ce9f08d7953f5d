"""Is a signal pending for a process? (the stand-in for FUSE_INTERRUPT)

pyfuse3 never tells a handler that its request was interrupted, so a read blocked in the
daemon would leave its caller in D state, deaf even to SIGKILL. A blocked read therefore looks
at the opener's ``/proc/<tid>/status`` now and then: a signal that is pending and neither
blocked nor ignored means the caller wants out, and the read answers EINTR.
"""

from __future__ import annotations


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
