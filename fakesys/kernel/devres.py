"""Managed device resources (drivers/base/devres.c).

Resources a driver registers while bound are released in reverse order of registration by
devres_release_all(), which the driver core runs after the driver's remove() (and after a
failed probe). devm_kzalloc() memory is freed there, whether or not something else, such as
an open file, still points at it: that is the bug of the
"When does the use of the devres API harm?" article.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .slab import Object
from .stacktrace import frame, stack

if TYPE_CHECKING:
    from .core import Device

Action = Callable[[], Awaitable[None] | None]


@dataclass
class Devres:
    """One managed resource; ``name`` is its release function's name, for reports."""

    name: str
    release: Action
    module: str | None = None


def devres_add(dev: Device, res: Devres) -> None:
    dev.devres.append(res)


async def devres_release_all(dev: Device) -> None:
    with frame("devres_release_all"):
        while dev.devres:
            res = dev.devres.pop()
            with frame(res.name, module=res.module):
                result = res.release()
                if result is not None:
                    await result


def devm_kzalloc(dev: Device, size: int, what: str) -> Object:
    """Allocate memory that is freed when the driver unbinds."""
    slab = dev.kernel.slab
    obj = slab.kmalloc(size, what, stack("devm_kmalloc"))

    def release() -> None:
        slab.kfree(obj, stack("kfree"))

    devres_add(dev, Devres("devm_kmalloc_release", release))
    return obj


def devm_add_action(dev: Device, action: Action, name: str, module: str | None = None) -> None:
    """devm_add_action(): run ``action`` at unbind, in devres order; ``name`` (of ``module``)
    is the frame it runs in."""
    devres_add(dev, Devres(name, action, module))
