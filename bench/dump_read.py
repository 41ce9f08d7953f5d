"""Reading a 256 MiB device coredump with ``cat``, against the same bytes on the local disk.

Mounts a one-driver scenario whose dump is 256 MiB, triggers the dump, and times
``cat devcdN/data > /dev/null`` (the kernel hands the file system at most 4 KiB per read, as
sysfs does for a size-0 bin attribute), then ``cat`` of a local file with the same bytes
(page cache warm). Daemon and client are pinned to CPU 0.

    .venv/bin/python bench/dump_read.py [--size-mib N]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CPU = "0"
SCENARIO = """
[[module]]
name = "bigdump"

[[driver]]
name = "bigdump"
bus = "platform"
module = "bigdump"
dump = "fixed"
dump_size = {size}

[[device]]
bus = "platform"
name = "bigdump"
id = 0
"""


def timed_cat(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["taskset", "-c", CPU, "cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    args = parser.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory() as tmp:
        scenario = Path(tmp, "bigdump.toml")
        scenario.write_text(SCENARIO.format(size=size))
        mnt = Path(tmp, "mnt")
        mnt.mkdir()
        daemon = subprocess.Popen(
            ["taskset", "-c", CPU, sys.executable, "-m", "fakesys", "mount",
             "--scenario", str(scenario), str(mnt)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert daemon.stdout is not None
        try:
            if "mounted" not in daemon.stdout.readline():
                raise SystemExit("fakesys did not mount")
            (mnt / "sys/devices/platform/bigdump.0/coredump").write_text("1\n")
            data = mnt / "sys/class/devcoredump/devcd1/data"
            fake_seconds = timed_cat(data)
            local = Path(tmp, "local")
            with open(data, "rb") as src, open(local, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            if local.stat().st_size != size:
                raise SystemExit(f"read {local.stat().st_size} bytes, expected {size}")
            timed_cat(local)  # warm the page cache
            local_seconds = timed_cat(local)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
            daemon.stdout.close()
    mib = size / (1 << 20)
    fake_rate, local_rate = mib / fake_seconds, mib / local_seconds
    print(
        f"{args.size_mib} MiB dump: fakesys {fake_rate:.1f} MiB/s ({fake_seconds:.2f} s),"
        f" local disk {local_rate:.1f} MiB/s ({local_seconds:.3f} s),"
        f" ratio {fake_rate / local_rate:.4f}"
    )


if __name__ == "__main__":
    os.umask(0o022)
    main()
