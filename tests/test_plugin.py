"""The pytest plugin as a downstream suite meets it: run with pytester in a pytest of its own,
from a working directory other than the test files'."""

from __future__ import annotations

import pytest

from .conftest import fuse_usable

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")

# A machine with one platform device, "gizmo.0", found nowhere else.
GIZMO = """
[[driver]]
name = "gizmo"
bus = "platform"

[[device]]
bus = "platform"
name = "gizmo"
id = 0
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


def test_a_relative_scenario_is_found_beside_the_test_file(pytester: pytest.Pytester) -> None:
    suite = pytester.mkpydir("suite")
    (suite / "machines").mkdir()
    (suite / "machines" / "gizmo.toml").write_text(GIZMO)
    (suite / "test_gizmo.py").write_text(
        "import pytest\n"
        "\n"
        '@pytest.mark.fakesys_scenario("machines/gizmo.toml")\n'
        "def test_marker(fakesys):\n"
        '    assert (fakesys / "sys/devices/platform/gizmo.0/driver").exists()\n'
        "\n"
        '@pytest.mark.parametrize("fakesys", ["machines/gizmo.toml"], indirect=True)\n'
        "def test_parameter(fakesys):\n"
        '    assert (fakesys / "sys/devices/platform/gizmo.0").exists()\n'
        "\n"
        "def test_factory(fakesys_factory):\n"
        '    gizmo = fakesys_factory("machines/gizmo.toml")\n'
        '    assert (gizmo / "sys/devices/platform/gizmo.0").exists()\n'
    )
    run(pytester, "suite").assert_outcomes(passed=3)  # run from the directory above


def test_a_module_shares_one_tree(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_shared="""
        import pytest

        pytestmark = pytest.mark.fakesys_scenario("default")
        seen = []

        def test_first(fakesys_module):
            seen.append(fakesys_module.path)
            fakesys_module.write("sys/bus/platform/drivers/foo/unbind", "foo.0")

        def test_second(fakesys_module):
            assert seen == [fakesys_module.path]
            assert not (fakesys_module / "sys/devices/platform/foo.0/driver").exists()
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_the_session_tree_is_the_ini_options_scenario(pytester: pytest.Pytester) -> None:
    (pytester.path / "machines").mkdir()
    (pytester.path / "machines" / "gizmo.toml").write_text(GIZMO)
    pytester.makeini("[pytest]\nfakesys_scenario = machines/gizmo.toml\n")
    test = """
        def test_it(fakesys_session):
            assert (fakesys_session / "sys/devices/platform/gizmo.0").exists()
            with open("mounts.txt", "a") as mounts:
                print(fakesys_session.path, file=mounts)
        """
    pytester.makepyfile(test_a=test, test_b=test)
    run(pytester).assert_outcomes(passed=2)
    first, second = (pytester.path / "mounts.txt").read_text().splitlines()
    assert first == second
