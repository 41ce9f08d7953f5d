"""A pytest plugin: the ``fakesys`` fixture mounts a scenario for a test.

The daemon runs as ``python -m fakesys mount`` in a subprocess; the test gets a
:class:`FakesysMount` with the mount's path and helpers, and talks to the tree with real
programs or plain file operations (never from a trio task of the test's own loop: the
daemon is another process, so blocking calls are fine, but prefer ``trio.to_thread`` in async
tests). Teardown never forks: SIGTERM, a lazy unmount through umount2(), then SIGKILL, so no
mount is left behind even when the test or the daemon failed.

Choose the scenario with a marker or an indirect parameter::

    @pytest.mark.fakesys_scenario("default")
    def test_unbind(fakesys):
        fakesys.write("sys/bus/platform/drivers/foo/unbind", "foo.0")
        assert fakesys.wait_gone("sys/devices/platform/foo.0/driver")

    @pytest.mark.parametrize("fakesys", ["default"], indirect=True)
    def test_other(fakesys): ...

The fixture skips the test when /dev/fuse cannot be opened (a container without
``--device /dev/fuse``), and fails it when the daemon cannot mount.

Engine tests (a :class:`~fakesys.kernel.Kernel` run in the test's own trio loop) get a check
too: deferred kernel work (a work item, a tasklet, a timer) that raises is only logged by the
kernel, which goes on, as a real one would after an oops in a worker; the plugin fails the test
in which that happened. A test that makes deferred work fail on purpose says so with
``@pytest.mark.fakesys_deferred_work_may_fail``.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from .harness import FakesysMount, fuse_usable

__all__ = ["FakesysMount", "fakesys", "fuse_usable"]


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


@pytest.fixture
def fakesys(request: pytest.FixtureRequest) -> Iterator[FakesysMount]:
    """A fakesys tree mounted for this test, and unmounted after it."""
    scenario: str | None = getattr(request, "param", None)
    marker = request.node.get_closest_marker("fakesys_scenario")
    if scenario is None and marker is not None:
        scenario = marker.args[0]
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
