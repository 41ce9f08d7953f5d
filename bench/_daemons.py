"""The file systems under benchmark: started pinned to one CPU, stopped with SIGTERM.

Shared by the benchmarks (each runs as ``python bench/NAME.py``, so this directory is on the
module path).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Daemons and clients share this CPU: latency is then that of the round trips alone.
CPU = "0"


def fakesys(mountpoint: Path, scenario: Path | None = None) -> list[str]:
    """The command that mounts fakesys (the default scenario unless ``scenario``)."""
    options = ["--scenario", str(scenario)] if scenario is not None else []
    return [sys.executable, "-m", "fakesys", "mount", *options, str(mountpoint)]


def floorfs(mountpoint: Path, *options: str) -> list[str]:
    """The command that mounts bench/floorfs.py, the bare pyfuse3 floor."""
    return [sys.executable, str(ROOT / "bench" / "floorfs.py"), str(mountpoint), *options]


def start(command: list[str]) -> subprocess.Popen[str]:
    """Start ``command`` on :data:`CPU` and return once it says it mounted."""
    proc = subprocess.Popen(["taskset", "-c", CPU, *command], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "mounted" not in line:
        proc.kill()
        raise SystemExit(f"{' '.join(command)} did not mount: {line!r}")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, and wait for the exit (a kill if it takes 30 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
