"""Reading a device coredump 4 KiB at a time, against the floor of the stack doing the same.

Mounts a one-driver scenario whose dump is 256 MiB and bench/floorfs.py with a ``data`` file
of the same size, pins both daemons and the client to CPU 0, triggers the dump, and times
``dd bs=4096`` over each file, in interleaved rounds (best round kept). sysfs hands a bin
attribute's reader at most PAGE_SIZE per read(2); the benchmark checks that a 128 KiB read of
the dump returns 4 KiB, and compares with the floor answering 4 KiB reads. Target: fakesys at
no less than the floor's throughput (ratio >= 1).

    .venv/bin/python bench/dump_read.py [--size-mib N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from _daemons import CPU, fakesys, floorfs, start, stop

SCENARIO = """
[[module]]
name = "bigdump"
devcoredump = "fixed"
params = {{ size = {size} }}

[[driver]]
impl = "dump_put"
name = "bigdump"
module = "bigdump"

[[device]]
bus = "platform"
name = "bigdump"
id = 0
"""


def timed_dd(path: Path, size: int) -> float:
    started = time.perf_counter()
    out = subprocess.run(
        ["taskset", "-c", CPU, "dd", f"if={path}", "of=/dev/null", "bs=4096", "status=none"],
        check=True,
    )
    seconds = time.perf_counter() - started
    assert out.returncode == 0
    return size / (1 << 20) / seconds


def largest_read(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return len(os.read(fd, 128 << 10))
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib << 20
    os.sched_setaffinity(0, {int(CPU)})
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp, "bigdump.toml")
        scenario.write_text(SCENARIO.format(size=size))
        fake_mnt, floor_mnt = Path(tmp, "fakesys"), Path(tmp, "floor")
        fake_mnt.mkdir()
        floor_mnt.mkdir()
        fake = start(fakesys(fake_mnt, scenario))
        floor = start(floorfs(floor_mnt, "--data-mib", str(args.size_mib)))
        try:
            (fake_mnt / "sys/devices/platform/bigdump.0/coredump").write_text("1\n")
            dump = fake_mnt / "sys/class/devcoredump/devcd1/data"
            per_call = largest_read(dump)
            rates: dict[str, list[float]] = {"fakesys": [], "floor": []}
            for _ in range(args.rounds):
                rates["fakesys"].append(timed_dd(dump, size))
                rates["floor"].append(timed_dd(floor_mnt / "data", size))
        finally:
            stop(fake)
            stop(floor)
    fake_rate, floor_rate = max(rates["fakesys"]), max(rates["floor"])
    print(
        f"{args.size_mib} MiB dump, 4 KiB reads: fakesys {fake_rate:.1f} MiB/s,"
        f" floor {floor_rate:.1f} MiB/s, ratio {fake_rate / floor_rate:.2f} (target >= 1);"
        f" a 128 KiB read(2) of the dump returns {per_call} bytes (kernel: at most 4096)"
    )


if __name__ == "__main__":
    os.umask(0o022)
    main()
