"""Scenario files: what is accepted, and the one-line errors for what is not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from fakesys.scenario import POLICIES, ScenarioError, boot, load, parse

BASE = """
[[module]]
name = "m"

[[driver]]
name = "d"
bus = "platform"
module = "m"
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + '[[device]]\nbus = "platform"\nname = "d"\ncolour = 1\n',
         "s.toml: device[0]: unknown field 'colour'"),
        (BASE + '[[device]]\nbus = "platform"\nname = 5\n',
         "s.toml: device[0].name: expected a string"),
        (BASE + '[[device]]\nbus = "isa"\nname = "x"\n',
         "s.toml: device[0].bus: expected 'platform' or 'pci'"),
        ('[[driver]]\nname = "d"\nbus = "platform"\nmodule = "nope"\n',
         "s.toml: driver[0].module: expected the name of a [[module]] (no module 'nope')"),
        (BASE + '[[device]]\nbus = "platform"\nname = "x"\nid = 1\n'
                '[[device]]\nbus = "platform"\nname = "x"\nid = 1\n',
         "s.toml: device[1].name: expected a unique device ('x.1' is used twice)"),
        (BASE + '[[device]]\nbus = "pci"\nslot = "0000:00:01.0"\nvendor = 70000\ndevice = 1\n',
         "s.toml: device[0].vendor: expected an integer from 0 to 0xffff"),
        (BASE + '[[device]]\nbus = "pci"\nslot = "0000:00:01.0"\ndevice = 1\n',
         "s.toml: device[0]: missing field 'vendor'"),
        ('[[driver]]\nname = "d"\nbus = "platform"\nprobe_errno = "EWHAT"\n',
         's.toml: driver[0].probe_errno: expected an errno name such as "ENOMEM"'),
        (BASE + '[[device]]\nbus = "platform"\nname = "x"\nsuppliers = "pmic.0"\n',
         "s.toml: device[0].suppliers: expected an array of device names"),
        (BASE + '[[device]]\nbus = "platform"\nname = "x"\nsuppliers = [1]\n',
         "s.toml: device[0].suppliers: expected an array of device names"),
        ("[machine]\n", "s.toml: unknown table 'machine'"),
        ("[[device]\n", "s.toml: not valid TOML"),
    ],
)  # fmt: skip
def test_errors_name_file_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as excinfo:
        parse(text, "s.toml")
    assert str(excinfo.value).startswith(message)


def test_default_scenario_loads() -> None:
    scenario = load(None)
    names = [d.dev_name for d in scenario.devices]
    assert names[:3] == ["foo.0", "foo.1", "0000:00:02.0"]
    # every character-device pattern has its driver in the default machine
    assert set(POLICIES.values()) <= {d.path.stem for d in scenario.drivers}


def mount_command(scenario: Path, mnt: Path) -> subprocess.CompletedProcess[str]:
    """``fakesys mount --scenario SCENARIO MNT``, expected to fail before mounting."""
    return subprocess.run(
        [sys.executable, "-m", "fakesys", "mount", "--scenario", str(scenario), str(mnt)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_reports_a_bad_scenario_with_status_2_and_no_mount(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[device]]\nbus = "platform"\n')
    mnt = tmp_path / "mnt"
    out = mount_command(bad, mnt)
    assert out.returncode == 2
    assert out.stderr == f"fakesys: {bad}: device[0]: missing field 'name'\n"
    assert not mnt.exists()


def test_device_driver_binding_and_attributes_are_checked() -> None:
    base = BASE + '[[driver]]\nname = "e"\nbus = "platform"\n'
    with pytest.raises(ScenarioError, match=r"device\[0\]\.driver: expected the name of a"):
        parse(base + '[[device]]\nbus = "platform"\nname = "x"\ndriver = "nope"\n', "s.toml")
    with pytest.raises(ScenarioError, match=r"device\[0\]\.driver: expected no driver"):
        parse(
            base + '[[device]]\nbus = "platform"\nname = "x"\ndriver = "d"\nbind = false\n',
            "s.toml",
        )
    with pytest.raises(ScenarioError, match=r"device\[0\]\.attrs\.n: expected a text value"):
        parse(base + '[[device]]\nbus = "platform"\nname = "x"\nattrs = { n = 1 }\n', "s.toml")
    scenario = parse(
        base
        + '[[device]]\nbus = "platform"\nname = "e"\ndriver = "d"\nattrs = { serial = "42" }\n',
        "s.toml",
    )
    assert scenario.devices[0].driver == "d"
    assert scenario.devices[0].attrs == {"serial": "42"}


async def test_a_named_driver_binds_even_without_a_match_and_attrs_show(
    nursery: trio.Nursery,
) -> None:
    text = BASE + (
        '[[driver]]\nname = "e"\nbus = "platform"\n'
        '[[device]]\nbus = "platform"\nname = "e"\nid = 0\ndriver = "d"\n'
        'attrs = { serial = "SN42" }\n'
    )
    kernel = await boot(parse(text, "s.toml"), nursery)
    dev = kernel.buses["platform"].find_device_by_name("e.0")
    assert dev is not None
    assert dev.driver is kernel.buses["platform"].drivers["d"]  # not "e", which matches by name
    node = kernel.lookup("sys/devices/platform/e.0/serial")
    assert node is not None
    assert node.mode == 0o444


def test_produce_needs_its_period() -> None:
    with pytest.raises(ScenarioError, match=r"device\[0\]\.produce: expected both"):
        parse(BASE + '[[device]]\nbus = "platform"\nname = "x"\nproduce = "tick"\n', "s.toml")


def test_an_error_found_while_building_is_reported_the_same_way(tmp_path: Path) -> None:
    clash = tmp_path / "clash.toml"
    clash.write_text(BASE + '[[device]]\nbus = "platform"\nname = "d"\nattrs = { uevent = "x" }\n')
    mnt = tmp_path / "mnt"
    out = mount_command(clash, mnt)
    assert out.returncode == 2
    assert out.stderr.startswith(f"fakesys: {clash}: device[0]: d cannot be added: File exists")
    assert out.stderr.count("\n") == 1
    assert out.stdout == ""  # never mounted
