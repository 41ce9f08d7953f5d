"""A big machine: 10,000 platform devices bound to one driver, against a small one and real /sys.

Generates the scenario (no big TOML is stored): ``foo.0`` to ``foo.N-1`` bound to the
platform driver ``foo``, plus a PCI GPU that dumps and a hot-pluggable serial adapter, so
every kind of tree-changing write can be timed. Mounts it and the same scenario with 3
devices, pins both daemons and this client to CPU 0, and prints in one run:

* ready: seconds from start to mounted, big and small (target: big < 2 s);
* RSS of the big daemon after a warm ``find`` (target < 150 MiB);
* warm ``find``: microseconds per node on the big tree and on this machine's /sys (target:
  ratio <= 3), and on bench/floorfs.py listing a tree of the same shape (as many
  directories, as many nodes): what pyfuse3 itself costs;
* open+read+close of one device's ``modalias``, big tree against small tree, interleaved
  blocks, median (target: ratio <= 1.3);
* tree-changing writes on the big tree, median and worst of a few, in ms (target < 100);
* SIGTERM to exit, big and small (target <= 1 s).

    .venv/bin/python bench/scale.py [--devices N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _daemons import CPU, fakesys, floorfs, start, stop

PCI = "sys/bus/pci/devices/0000:00:02.0"
FOO = "sys/bus/platform/drivers/foo"
HEAD = """
[[module]]
name = "foo"

[[module]]
name = "fakegpu"

[[module]]
name = "fakeserial"

[[driver]]
impl = "foo"
module = "foo"

[[driver]]
impl = "fakegpu"
module = "fakegpu"

[[driver]]
impl = "fakeserial"
module = "fakeserial"

[[device]]
bus = "pci"
slot = "0000:00:02.0"
vendor = 0x1234
device = 0x1111
class = 0x030000

[[device]]
bus = "hotplug"
id = 1
"""
DEVICE = """
[[device]]
bus = "platform"
name = "foo"
id = {id}
"""


def scenario(devices: int) -> str:
    return HEAD + "".join(DEVICE.format(id=i) for i in range(devices))


class Daemon:
    def __init__(self, scenario_path: Path, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        mountpoint.mkdir()
        started = time.perf_counter()
        self.process = start(fakesys(mountpoint, scenario_path))
        self.ready_seconds = time.perf_counter() - started

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise SystemExit("no VmRSS")

    def stop(self) -> float:
        """SIGTERM; seconds until the process exited."""
        started = time.perf_counter()
        stop(self.process)
        return time.perf_counter() - started


def count_dirs(root: Path) -> int:
    out = subprocess.run(
        ["find", str(root), "-type", "d"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    return out.stdout.count(b"\n")


def floor_tree(mountpoint: Path, dirs: int, nodes: int) -> subprocess.Popen[str]:
    files_per_dir = max(0, round((nodes - dirs) / max(dirs, 1)))
    mountpoint.mkdir()
    return start(floorfs(mountpoint, "--tree-dirs", str(dirs), "--tree-files", str(files_per_dir)))


def warm_find_us_per_node(root: Path) -> tuple[float, int]:
    def run() -> tuple[float, int]:
        started = time.perf_counter()
        out = subprocess.run(
            ["taskset", "-c", CPU, "find", str(root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            check=False,
        ).stdout
        return time.perf_counter() - started, out.count(b"\n")

    run()  # cold: fills the caches
    seconds, nodes = min(run() for _ in range(3))
    return seconds / nodes * 1e6, nodes


def open_read_close(path: Path) -> Callable[[], None]:
    name = str(path)

    def op() -> None:
        fd = os.open(name, os.O_RDONLY)
        os.read(fd, 4096)
        os.close(fd)

    return op


def per_op_us(op: Callable[[], None], n: int) -> float:
    op()
    started = time.perf_counter()
    for _ in range(n):
        op()
    return (time.perf_counter() - started) / n * 1e6


def write_ms(path: Path, text: str) -> float:
    fd = os.open(path, os.O_WRONLY)
    try:
        started = time.perf_counter()
        os.write(fd, text.encode())
        return (time.perf_counter() - started) * 1e3
    finally:
        os.close(fd)


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.001)


def tree_writes(mnt: Path, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}

    def record(kind: str, ms: float) -> None:
        times.setdefault(kind, []).append(ms)

    for i in range(rounds):
        device = f"foo.{i + 1}"
        record("unbind", write_ms(mnt / FOO / "unbind", device))
        record("bind", write_ms(mnt / FOO / "bind", device))
        record("remove (PCI)", write_ms(mnt / PCI / "remove", "1"))
        record("rescan (PCI)", write_ms(mnt / "sys/bus/pci/rescan", "1"))
        wait_for(mnt / PCI / "coredump")
        record("new_device", write_ms(mnt / "sys/bus/hotplug/new_device", "2"))
        record("del_device", write_ms(mnt / "sys/bus/hotplug/del_device", "2"))
        write_ms(mnt / PCI / "coredump", "1")
        dumps = (mnt / "sys/class/devcoredump").glob("devcd*")
        newest = max(dumps, key=lambda path: int(path.name.removeprefix("devcd")))
        record("dump data", write_ms(newest / "data", "1"))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CPU)})
    with tempfile.TemporaryDirectory() as tmp:
        big_toml, small_toml = Path(tmp, "big.toml"), Path(tmp, "small.toml")
        big_toml.write_text(scenario(args.devices))
        small_toml.write_text(scenario(3))
        big = Daemon(big_toml, Path(tmp, "big"))
        small = Daemon(small_toml, Path(tmp, "small"))
        try:
            find_fake, nodes_fake = warm_find_us_per_node(big.mountpoint)
            find_sys, nodes_sys = warm_find_us_per_node(Path("/sys"))
            floor = floor_tree(Path(tmp, "floor"), count_dirs(big.mountpoint), nodes_fake)
            try:
                find_floor, nodes_floor = warm_find_us_per_node(Path(tmp, "floor", "tree"))
            finally:
                stop(floor)
            rss = big.rss_mib()
            attr = "sys/devices/platform/foo.2/modalias"
            samples: dict[str, list[float]] = {"big": [], "small": []}
            for _ in range(args.blocks):
                samples["big"].append(
                    per_op_us(open_read_close(big.mountpoint / attr), args.iterations)
                )
                samples["small"].append(
                    per_op_us(open_read_close(small.mountpoint / attr), args.iterations)
                )
            per_file = {name: statistics.median(values) for name, values in samples.items()}
            writes = tree_writes(big.mountpoint, args.rounds)
        finally:
            stop_big = big.stop()
            stop_small = small.stop()
    print(f"devices: {args.devices} (nodes: {nodes_fake}); small tree: 3 devices")
    print(
        f"ready: big {big.ready_seconds:.2f} s, small {small.ready_seconds:.2f} s"
        " (target: big < 2 s)"
    )
    print(f"daemon RSS after a warm find: {rss:.0f} MiB (target < 150 MiB)")
    print(
        f"warm find: fakesys {find_fake:.2f} us/node ({nodes_fake} nodes), /sys"
        f" {find_sys:.2f} us/node ({nodes_sys} nodes), ratio {find_fake / find_sys:.2f}"
        f" (target <= 3); pyfuse3 floor, same shape: {find_floor:.2f} us/node"
        f" ({nodes_floor} nodes), fakesys/floor {find_fake / find_floor:.2f}"
    )
    print(
        f"modalias open+read+close: big {per_file['big']:.1f} us, small"
        f" {per_file['small']:.1f} us, ratio {per_file['big'] / per_file['small']:.2f}"
        " (target <= 1.3)"
    )
    for kind, values in writes.items():
        print(
            f"write {kind}: median {statistics.median(values):.1f} ms,"
            f" worst {max(values):.1f} ms (target < 100 ms)"
        )
    print(f"SIGTERM to exit: big {stop_big:.2f} s, small {stop_small:.2f} s (target <= 1 s)")


if __name__ == "__main__":
    os.umask(0o022)
    main()
