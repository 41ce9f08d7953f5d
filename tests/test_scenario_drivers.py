"""Drivers named by scenarios: shipped ones, files of the user's, module paths; their module
parameters; the one-line errors for a driver file that cannot be used; and what a probe that
fails half-way leaves behind (nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from fakesys.scenario import ScenarioError, boot, load, parse

from .engine import booted, kasan_reports, read

THERMO = Path(__file__).parent.parent / "examples" / "own-driver"

ONE_DRIVER = """
from fakesys.linux import PlatformDriver, module_platform_driver, this_module

THIS_MODULE = this_module()
{body}
"""


def scenario_with(tmp_path: Path, driver_source: str, impl: str = "mine.py") -> Path:
    (tmp_path / "mine.py").write_text(driver_source)
    path = tmp_path / "s.toml"
    path.write_text(
        f'[[module]]\nname = "m"\n\n[[driver]]\nimpl = "{impl}"\nmodule = "m"\n\n'
        '[[device]]\nbus = "platform"\nname = "mine"\nid = 0\n'
    )
    return path


def mount_errors(scenario: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "mnt").mkdir()
    return subprocess.run(
        [sys.executable, "-m", "fakesys", "mount", "--scenario", str(scenario),
         str(tmp_path / "mnt")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def test_a_driver_file_next_to_the_scenario_drives_its_device(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    body = (
        "async def mine_probe(pdev):\n    pass\n\n"
        'mine_driver = PlatformDriver(name="mine", probe=mine_probe)\n'
        "module_platform_driver(mine_driver)\n"
    )
    kernel = await boot(load(str(scenario_with(tmp_path, ONE_DRIVER.format(body=body)))), nursery)
    assert await read(kernel, "sys/devices/platform/mine.0/uevent") == (
        "DRIVER=mine\nMODALIAS=platform:mine\n"
    )
    assert kernel.buses["platform"].drivers["mine"].owner is kernel.modules["m"]


async def test_a_module_path_names_a_driver_and_params_configure_it(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[module]]\nname = "n"\nparams = { node = "gadget", mode = 0o640 }\n\n'
        '[[driver]]\nimpl = "fakesys.drivers.cdev_refcounted"\nname = "gadget"\nmodule = "n"\n\n'
        '[[device]]\nbus = "platform"\nname = "gadget"\nid = 0\n'
    )
    kernel = await boot(load(str(path)), nursery)
    node = kernel.lookup("dev/gadget0")
    assert node is not None and node.mode == 0o640
    uevent = await read(kernel, "sys/devices/platform/gadget.0/lifetime/gadget0/uevent")
    assert "DEVMODE=0640" in uevent.splitlines()
    # the parameters with a mode are in /sys/module/<m>/parameters
    assert await read(kernel, "sys/module/n/parameters/node") == "gadget\n"


@pytest.mark.parametrize(
    ("impl", "message"),
    [
        ("nothere.py", "driver[0].impl: expected a driver file (no file"),
        (
            "nosuchdriver",
            "driver[0].impl: expected a shipped driver (cdev_close_held, cdev_close_racy,",
        ),
    ],
)
def test_a_driver_that_cannot_be_found_is_a_parse_error(
    tmp_path: Path, impl: str, message: str
) -> None:
    text = f'[[driver]]\nimpl = "{impl}"\n'
    with pytest.raises(ScenarioError) as excinfo:
        parse(text, "s.toml", tmp_path)
    assert message in str(excinfo.value)


@pytest.mark.parametrize(
    ("source", "impl", "message"),
    [
        ("def broken(:\n", "mine.py", "mine.py:1: does not load: invalid syntax"),
        ("import nosuchmodule\n", "mine.py",
         "mine.py:1: does not load: ModuleNotFoundError: No module named 'nosuchmodule'"),
        (ONE_DRIVER.format(body="x = 1\n"), "mine.py",
         "driver[0].impl: {path}: defines no driver (a PlatformDriver, PciDriver or"),
        (ONE_DRIVER.format(body='a = PlatformDriver(name="a")\nb = PlatformDriver(name="b")\n'),
         "mine.py", "defines several drivers (a, b): name one, as 'mine.py:a'"),
        (ONE_DRIVER.format(body="x = 1\n"), "mine.py:x",
         "driver[0].impl: {path}: 'x' is not a driver defined in the file"),
    ],
)  # fmt: skip
def test_a_driver_file_that_cannot_be_used_is_one_line_and_no_mount(
    tmp_path: Path, source: str, impl: str, message: str
) -> None:
    scenario = scenario_with(tmp_path, source, impl)
    out = mount_errors(scenario, tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"fakesys: {scenario}: module m: ") or out.stderr.startswith(
        f"fakesys: {scenario}: driver[0]"
    ), out.stderr
    assert message.format(path=tmp_path / "mine.py") in out.stderr
    assert out.stdout == ""  # never mounted
    assert not os.path.ismount(tmp_path / "mnt")


async def test_a_probe_that_fails_half_way_leaves_nothing_behind(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Two drivers claim the same node name: the second probe fails when its class device
    cannot be added. device_add() undoes its partial work, the driver its own (minor, IRQ,
    memory), and really_probe() releases devres: no half-built class directory, no held
    number, no stale interrupt handler."""
    path = tmp_path / "s.toml"
    path.write_text(
        "".join(
            f'[[module]]\nname = "{m}"\nparams = {{ node = "same" }}\n\n'
            f'[[driver]]\nimpl = "cdev_refcounted"\nname = "{m}"\nmodule = "{m}"\n\n'
            f'[[device]]\nbus = "platform"\nname = "{m}"\nid = 0\n\n'
            for m in ("first", "second")
        )
    )
    kernel = await boot(load(str(path)), nursery)
    first = kernel.buses["platform"].find_device_by_name("first.0")
    second = kernel.buses["platform"].find_device_by_name("second.0")
    assert first is not None and second is not None
    assert first.driver is not None and second.driver is None
    assert second.kn is not None and sorted(second.kn.children) == sorted(
        set(second.kn.children) - {"lifetime", "driver"}
    )
    assert "lifetime" not in second.kn.children  # no half-built class glue directory
    assert not second.devres  # devres released
    assert not second.hw.irq.actions  # the probe's IRQ was freed
    majors = [
        m for m, ranges in kernel.char_devices.majors.items() for *_, n in ranges if n == "same"
    ]
    assert len(majors) == 2  # each module holds its own range ...
    mapped = {devt for devt, cdev in kernel.char_devices.cdev_map.items() if devt[0] in majors}
    assert len(mapped) == 1  # ... but only the first's number is mapped: no held minor
    text = kernel.log.text()
    assert "sysfs: cannot create duplicate filename '/class/lifetime/same0'" in text
    assert "second second.0: probe with driver second failed with error -17" in text
    assert await read(kernel, "sys/devices/platform/first.0/lifetime/same0/dev")
    assert kasan_reports(kernel) == []


async def test_the_example_driver_loads_by_relative_path(nursery: trio.Nursery) -> None:
    kernel = await booted(nursery, str(THERMO / "scenario.toml"))
    assert sorted(kernel.modules) == ["thermo", "thermo_fixed"]


async def test_a_built_in_policy_driver_reads_its_node_class_and_mode(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[[driver]]\nname = "b"\nbus = "platform"\npolicy = "refcounted"\n'
        'node = "builtin"\nclass = "things"\nmode = 0o640\n\n'
        '[[device]]\nbus = "platform"\nname = "b"\nid = 0\n'
    )
    kernel = await boot(load(str(path)), nursery)
    node = kernel.lookup("dev/builtin0")
    assert node is not None and node.mode == 0o640
    assert kernel.lookup("sys/class/things/builtin0") is not None
