"""A pytest plugin: fixtures that mount a scenario for a test, a module or the session.

Each daemon runs as ``python -m fakesys mount`` in a subprocess; a fixture gives a
:class:`FakesysMount` with the mount's path and helpers, and the test talks to the tree with
real programs or plain file operations (never from a trio task of the test's own loop: the
daemon is another process, so blocking calls are fine, but prefer ``trio.to_thread`` in async
tests). Teardown never forks: SIGTERM, a lazy unmount through umount2(), then SIGKILL, so no
mount is left behind even when the test or the daemon failed; a daemon that logged a
traceback fails the test that used it.

``fakesys``          a tree for one test
``fakesys_module``   one tree for every test of a module (read-only use, or tests that put
                     back what they change)
``fakesys_session``  one tree for the whole run, of the scenario in the ``fakesys_scenario``
                     ini option (the built-in one if unset)
``fakesys_factory``  a function ``(scenario=None) -> FakesysMount`` that mounts another tree
                     each time it is called: several trees at once, all unmounted after the test

Choose the scenario of ``fakesys`` and ``fakesys_module`` with a marker (on the test, its
class or the module's ``pytestmark``) or an indirect parameter::

    @pytest.mark.fakesys_scenario("default")
    def test_unbind(fakesys):
        fakesys.write("sys/bus/platform/drivers/foo/unbind", "foo.0")
        assert fakesys.wait_gone("sys/devices/platform/foo.0/driver")

    @pytest.mark.parametrize("fakesys", ["scenarios/mine.toml"], indirect=True)
    def test_other(fakesys): ...

A scenario is a shipped name, or a TOML file: a relative path is taken from the directory of
the test file that names it (the ini file's directory for the ini option).

The fixtures skip the test when /dev/fuse cannot be opened (a container without
``--device /dev/fuse``), and fail it when the daemon cannot mount.

Engine tests (a :class:`~fakesys.kernel.Kernel` run in the test's own trio loop) get a check
too: deferred kernel work (a work item, a tasklet, a timer) that raises is only logged by the
kernel, which goes on, as a real one would after an oops in a worker; the plugin fails the test
in which that happened. A test that makes deferred work fail on purpose says so with
``@pytest.mark.fakesys_deferred_work_may_fail``.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from .harness import FakesysMount, Uevent, fuse_usable

__all__ = [
    "FakesysMount",
    "MountFactory",
    "Uevent",
    "fakesys",
    "fakesys_factory",
    "fakesys_module",
    "fakesys_session",
    "fuse_usable",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "fakesys_scenario",
        "the scenario fakesys_session mounts: a shipped name or a TOML file (relative to the "
        "ini file's directory)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fakesys_scenario(name_or_file): the scenario the fakesys fixture mounts"
    )
    config.addinivalue_line(
        "markers",
        "fakesys_deferred_work_may_fail: deferred kernel work that raises does not fail the test",
    )


class _EngineFailures(logging.Handler):
    """Collects the exceptions the engine logged (``Kernel.spawn`` logs the work that raised)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None:
            self.records.append(record)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """Fail a test whose deferred kernel work raised, unless it is marked as expecting it."""
    failures = _EngineFailures()
    engine_log = logging.getLogger("fakesys.kernel")
    engine_log.addHandler(failures)
    try:
        result = yield
    finally:
        engine_log.removeHandler(failures)
    if failures.records and item.get_closest_marker("fakesys_deferred_work_may_fail") is None:
        formatter = logging.Formatter()
        details = "\n".join(formatter.format(record) for record in failures.records)
        pytest.fail(f"deferred kernel work raised:\n{details}", pytrace=False)
    return result


class MountFactory(Protocol):
    """What ``fakesys_factory`` gives: mount one more tree and return it."""

    def __call__(self, scenario: str | None = None) -> FakesysMount: ...


def resolve_scenario(scenario: str, directory: Path) -> str:
    """A shipped scenario's name as it is; a relative TOML path taken from ``directory``."""
    path = Path(scenario)
    if path.is_absolute() or (path.suffix != ".toml" and len(path.parts) == 1):
        return scenario
    return str(directory / path)


def _requested_scenario(request: pytest.FixtureRequest) -> str | None:
    """The indirect parameter, else the closest ``fakesys_scenario`` marker, else None."""
    scenario: str | None = getattr(request, "param", None)
    if scenario is None:
        marker = request.node.get_closest_marker("fakesys_scenario")
        scenario = marker.args[0] if marker is not None else None
    return None if scenario is None else resolve_scenario(scenario, request.path.parent)


@contextlib.contextmanager
def _mounted(scenario: str | None) -> Iterator[FakesysMount]:
    if not fuse_usable():
        pytest.skip("no usable /dev/fuse on this machine")
    with tempfile.TemporaryDirectory(prefix="fakesys-") as tmp:
        try:
            mount = FakesysMount.start(Path(tmp, "mnt"), scenario, Path(tmp, "daemon.stderr"))
        except RuntimeError as e:
            pytest.fail(str(e))
        try:
            yield mount
        finally:
            mount.stop()
        stderr = mount.daemon_stderr()
    assert "Traceback" not in stderr, f"the fakesys daemon logged an exception:\n{stderr}"


@pytest.fixture
def fakesys(request: pytest.FixtureRequest) -> Iterator[FakesysMount]:
    """A fakesys tree mounted for this test, and unmounted after it."""
    with _mounted(_requested_scenario(request)) as mount:
        yield mount


@pytest.fixture(scope="module")
def fakesys_module(request: pytest.FixtureRequest) -> Iterator[FakesysMount]:
    """One tree for the tests of a module; the scenario comes from the module's marker."""
    with _mounted(_requested_scenario(request)) as mount:
        yield mount


@pytest.fixture(scope="session")
def fakesys_session(pytestconfig: pytest.Config) -> Iterator[FakesysMount]:
    """One tree for the whole run, of the ``fakesys_scenario`` ini option's scenario."""
    scenario = pytestconfig.getini("fakesys_scenario") or None
    if scenario is not None and pytestconfig.inipath is not None:
        scenario = resolve_scenario(scenario, pytestconfig.inipath.parent)
    with _mounted(scenario) as mount:
        yield mount


@pytest.fixture
def fakesys_factory(request: pytest.FixtureRequest) -> Iterator[MountFactory]:
    """``fakesys_factory(scenario=None)`` mounts one more tree (the built-in scenario, a
    shipped one or a TOML file) and returns it; every tree is unmounted after the test."""
    with contextlib.ExitStack() as mounts:

        def mount(scenario: str | None = None) -> FakesysMount:
            if scenario is not None:
                scenario = resolve_scenario(scenario, request.path.parent)
            return mounts.enter_context(_mounted(scenario))

        yield mount
