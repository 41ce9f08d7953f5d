"""The invalidator writes no notice once closed (the session is about to be destroyed).

No mount here: with no FUSE session, pyfuse3 refuses a notice with EINVAL, which the
invalidator logs, so a notice it writes is seen in the log.
"""

from __future__ import annotations

import logging

import pytest
import trio

from fakesys.fuse import Invalidator
from fakesys.kernfs import KernfsRoot


async def notices_logged(invalidator: Invalidator, caplog: pytest.LogCaptureFixture) -> str:
    tree = KernfsRoot()
    tree.listeners.append(invalidator)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(invalidator.run)
        tree.create_dir(tree.root, "new")  # the root's link count changed: one notice
        await invalidator.flush(invalidator.submitted, timeout=30)
        nursery.cancel_scope.cancel()
    return caplog.text


async def test_a_notice_is_written_while_open(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert "invalidation of 1 failed" in await notices_logged(Invalidator(), caplog)


async def test_no_notice_is_written_once_closed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    invalidator = Invalidator()
    invalidator.close(timeout=0)
    assert "invalidation" not in await notices_logged(invalidator, caplog)
