"""The benchmarks keep running (their figures are read by people, not asserted here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import fuse_usable

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")
def test_attr_latency_benchmark_runs_and_reports_ratios() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "attr_latency.py"),
            "--iterations",
            "20",
            "--blocks",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert re.search(r"attribute open\+read\+close: .* ratio \d+\.\d\d .* \d+\.\d\d", out.stdout)
    assert re.search(r"cached stat: .* ratio to floor \d+\.\d\d", out.stdout)


@pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")
def test_record_benchmark_runs_and_reports_times_and_ratios() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "record.py"), "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert re.search(r"^record: [\d.]+ s \(floor: walk and read [\d.]+ s, ratio \d+\.\d\d\)$",
                     out.stdout, re.MULTILINE)  # fmt: skip
    assert re.search(r"^mount: ready in [\d.]+ s \(built-in scenario [\d.]+ s, ratio \d+\.\d\d",
                     out.stdout, re.MULTILINE)  # fmt: skip
