"""Scenario files: what is accepted, and the one-line errors for what is not."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from fakesys.scenario import POLICIES, ScenarioError, boot, load, parse

from .conftest import fakesys_command

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
         "s.toml: device[0].name: expected a sysfs name"),
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
        ('[[module]]\nname = "m/x"\n', "s.toml: module[0].name: expected a module name"),
        (f'[[module]]\nname = "{"m" * 56}"\n', "s.toml: module[0].name: expected a module name"),
        ('[[driver]]\nname = "a/b"\nbus = "platform"\n',
         "s.toml: driver[0].name: expected a sysfs name (not empty, not '.' or '..', no '/'"),
        ('[[driver]]\nname = ""\nbus = "platform"\n', "s.toml: driver[0].name: expected a sysfs"),
        ('[[driver]]\nname = "d"\nbus = "platform"\npolicy = "devm"\nclass = "x/y"\n',
         "s.toml: driver[0].class: expected a sysfs name"),
        ('[[driver]]\nname = "d"\nbus = "platform"\npolicy = "devm"\nnode = "../x"\n',
         's.toml: driver[0].node: expected a device node name such as "video" or "dri/card"'),
        (BASE + '[[device]]\nbus = "platform"\nname = ".."\n',
         "s.toml: device[0].name: expected a sysfs name"),
        (BASE + '[[device]]\nbus = "platform"\nname = "."\n',
         "s.toml: device[0].name: expected a sysfs name"),
        (BASE + '[[device]]\nbus = "platform"\nname = "a/b"\nid = 0\n',
         "s.toml: device[0].name: expected a sysfs name"),
        (BASE + f'[[device]]\nbus = "platform"\nname = "{"x" * 254}"\nid = 10\n',
         "s.toml: device[0].name: expected a sysfs name"),
        (BASE + '[[device]]\nbus = "platform"\nname = "x"\nattrs = { "" = "1" }\n',
         's.toml: device[0].attrs."": expected an attribute name that is a sysfs name'),
        (BASE + '[[device]]\nbus = "platform"\nname = "x"\nattrs = { "a/b" = "1" }\n',
         's.toml: device[0].attrs."a/b": expected an attribute name that is a sysfs name'),
        *((BASE + f'[[device]]\nbus = "pci"\nslot = "{slot}"\nvendor = 1\ndevice = 1\n',
           's.toml: device[0].slot: expected a PCI slot name such as "0000:00:02.0" '
           "(domain:bus:device.function in lowercase hex, device at most 1f, function at most 7)")
          for slot in ("zz:00:02", "0000:00:02", "0000:00:20.0", "0000:00:02.8", "0000:00:0A.0",
                       "0000:00:02.0 ")),
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
    return fakesys_command("mount", "--scenario", str(scenario), str(mnt))


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
    mnt.mkdir()
    out = mount_command(clash, mnt)
    assert out.returncode == 2
    assert out.stderr.startswith(f"fakesys: {clash}: device[0]: d cannot be added: File exists")
    assert out.stderr.count("\n") == 1
    assert out.stdout == ""  # never mounted


def char_drivers(count: int) -> str:
    """``count`` modules, each with a character-device driver."""
    return "".join(
        f'[[module]]\nname = "c{i}"\n'
        f'[[driver]]\nname = "c{i}"\nbus = "platform"\nmodule = "c{i}"\npolicy = "refcounted"\n'
        for i in range(count)
    )


async def test_every_dynamic_major_can_be_used(nursery: trio.Nursery) -> None:
    """find_dynamic_major() gives 254 down to 234, then 511 down to 384: 149 drivers boot."""
    kernel = await boot(parse(char_drivers(149), "s.toml"), nursery)
    dynamic = [major for major in kernel.char_devices.majors if major >= 234]
    assert sorted(dynamic) == [*range(234, 255), *range(384, 512)]


def refused(tmp_path: Path, text: str) -> tuple[Path, str]:
    """``fakesys mount`` of a scenario file of ``text``, which must refuse it with status 2
    before mounting: the file and what was said."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(text)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    out = mount_command(scenario, mnt)
    assert out.returncode == 2
    assert out.stdout == ""
    return scenario, out.stderr


def test_more_character_device_drivers_than_dynamic_majors_is_one_line(tmp_path: Path) -> None:
    """The failed init is said with the kernel's reason (__register_chrdev_region())."""
    scenario, said = refused(tmp_path, char_drivers(150))
    assert said == (
        f"fakesys: {scenario}: module c149: init failed: Device or resource busy "
        '(CHRDEV "c149" dynamic allocation region is full)\n'
    )


@pytest.mark.parametrize(
    "device",
    [
        '[[device]]\nbus = "platform"\nname = ".."\n',
        '[[device]]\nbus = "platform"\nname = "a/b"\nid = 0\n',
        '[[device]]\nbus = "platform"\nname = "x"\nattrs = { "" = "1" }\n',
    ],
    ids=["dotdot", "slash", "empty-attribute"],
)
def test_a_name_the_tree_cannot_hold_is_refused_before_mounting(
    tmp_path: Path, device: str
) -> None:
    scenario, said = refused(tmp_path, BASE + device)
    assert said.startswith(f"fakesys: {scenario}: device[0].")
    assert "expected" in said
    assert said.count("\n") == 1


def test_a_driver_file_that_names_its_driver_against_the_rules_is_refused(
    tmp_path: Path,
) -> None:
    (tmp_path / "slashed.py").write_text(
        "from fakesys.linux import PlatformDriver, module_platform_driver\n"
        'slashed = PlatformDriver(name="a/b")\n'
        "module_platform_driver(slashed)\n"
    )
    scenario, said = refused(tmp_path, '[[driver]]\nimpl = "slashed.py"\n')
    assert said == (
        f"fakesys: {scenario}: driver[0].impl: {tmp_path}/slashed.py: expected a driver named "
        "by a sysfs name (not empty, not '.' or '..', no '/' or NUL, at most 255 bytes), "
        "not 'a/b'\n"
    )
