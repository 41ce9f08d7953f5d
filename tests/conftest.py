"""Shared test helpers. The mount itself comes from fakesys's own pytest plugin (the
``fakesys`` fixture, :mod:`fakesys.pytest_plugin`), which is what downstream users get."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from fakesys.pytest_plugin import FakesysMount, fuse_usable

Mount = FakesysMount

__all__ = ["Mount", "fuse_usable", "wait_until"]


@pytest.fixture
def mount(fakesys: FakesysMount) -> FakesysMount:
    """The tests' name for the plugin's fixture."""
    return fakesys


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
