"""This machine's whole /sys: the time to record it and the time to mount the recording.

Prints, measured in one run (the median of ``--repeat`` runs each):

* record: seconds of ``fakesys record -o FILE``, against a floor measured here: a plain walk
  of the same directories that stats every entry and reads every file the recorder reads;
* mount: seconds from start to mounted of the recording, against the built-in scenario's
  (target: the recording < 3 s). Daemon and client are pinned to CPU 0.

    .venv/bin/python bench/record.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scale import CPU, Daemon

from fakesys.record import ROOTS, SKIPPED, record


def record_seconds(output: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["taskset", "-c", CPU, sys.executable, "-m", "fakesys", "record", "-o", str(output)],
        check=True,
    )
    return time.perf_counter() - started


def floor_seconds() -> float:
    """Stat every entry below the recorded directories and read every file the recorder
    would, in this process: what any recorder has to do."""
    started = time.perf_counter()
    for root in ROOTS:
        for directory, dirs, files in os.walk(f"/sys/{root}"):
            for name in dirs + files:
                path = os.path.join(directory, name)
                st = os.lstat(path)
                relative = path.removeprefix("/sys/")
                if name not in files or os.path.islink(path) or not st.st_mode & 0o444:
                    continue
                if any(p.match(relative) for p in SKIPPED):
                    continue
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
                except OSError:
                    continue
                try:
                    while os.read(fd, 1 << 16):
                        pass
                except OSError:
                    pass
                finally:
                    os.close(fd)
    return time.perf_counter() - started


def ready_seconds(scenario: Path, mountpoint: Path) -> float:
    daemon = Daemon(scenario, mountpoint)
    daemon.stop()
    return daemon.ready_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CPU)})
    with tempfile.TemporaryDirectory() as tmp:
        recording = Path(tmp, "machine.toml")
        records = [record_seconds(recording) for _ in range(args.repeat)]
        floors = [floor_seconds() for _ in range(args.repeat)]
        mounts, defaults = [], []
        for i in range(args.repeat):
            mounts.append(ready_seconds(recording, Path(tmp, f"machine{i}")))
            defaults.append(ready_seconds(Path("default"), Path(tmp, f"default{i}")))
        size = recording.stat().st_size
        recorded = record()
    entries = sum(len(d.entries) for d in recorded.dirs.values()) + len(recorded.dirs)
    devices = sum(1 for _ in recorded.device_paths())
    rec, floor = statistics.median(records), statistics.median(floors)
    mount, default = statistics.median(mounts), statistics.median(defaults)
    print(f"whole machine: {entries} entries, {devices} devices, a {size / 1024:.0f} KiB recording")
    print(f"record: {rec:.2f} s (floor: walk and read {floor:.2f} s, ratio {rec / floor:.2f})")
    print(
        f"mount: ready in {mount:.2f} s (built-in scenario {default:.2f} s, ratio"
        f" {mount / default:.2f}; target: < 3 s)"
    )


if __name__ == "__main__":
    os.umask(0o022)
    main()
