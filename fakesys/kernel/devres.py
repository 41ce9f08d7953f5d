"""Managed device resources (drivers/base/devres.c).

Resources a driver registers while bound are released in reverse order of registration by
devres_release_all(), which the driver core runs after the driver's remove() (and after a
failed probe). devm_kzalloc() memory is freed there, whether or not something else, such as
an open file, still points at it: that is the bug of the "When does the use of the devres
API harm?" article.

A devm_kzalloc() struct sits behind the devres header (``struct devres_node``, 40 bytes on
x86-64), in one allocation: a KASAN report gives the offset into that allocation and its
kmalloc cache, as the kernel's does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from .calls import call, current_kernel
from .slab import Object, Struct
from .stacktrace import frame, stack

if TYPE_CHECKING:
    from .core import Device

Action = Callable[[], Awaitable[None] | None]
S = TypeVar("S", bound=Struct)
DEVRES_HEADER = 40  # struct devres_node: list_head entry, release, name, size


@dataclass
class Devres:
    """One managed resource. ``name`` is its release function's, for reports; ``match``
    identifies it for devres_destroy(); ``memory``, if any, is the devres allocation itself,
    which release_nodes() frees after the release ran."""

    name: str
    release: Action
    module: str | None = None
    match: object = None
    memory: Object | None = None


def devres_add(dev: Device, res: Devres) -> None:
    dev.devres.append(res)


def devres_destroy(dev: Device, name: str, match: object) -> bool:
    """Drop the resource without running its release; True if it was there."""
    for res in reversed(dev.devres):
        if res.name == name and res.match == match:
            dev.devres.remove(res)
            return True
    return False


async def devres_release_all(dev: Device) -> None:
    """Release everything, newest first (release_nodes())."""
    with frame("devres_release_all", "release_nodes"):
        while dev.devres:
            res = dev.devres.pop()
            with frame(res.name, module=res.module):
                result = res.release()
                if result is not None:
                    await result
            if res.memory is not None:
                res.memory.slab.kfree(res.memory, stack("kfree"))


def _noop() -> None:
    """devm_kmalloc_release(): nothing; release_nodes() frees the memory."""


def devm_kzalloc(dev: Device, cls: type[S]) -> S:
    """A zeroed struct freed when the driver unbinds."""
    slab = dev.kernel.slab
    memory = slab.kmalloc(
        DEVRES_HEADER + cls.__c_size__,
        f"struct {cls.__c_name__}",
        stack("devm_kmalloc", "__kmalloc_node_track_caller_noprof"),
    )
    obj = object.__new__(cls)
    obj._zero(memory, DEVRES_HEADER)
    devres_add(dev, Devres("devm_kmalloc_release", _noop, match=obj, memory=memory))
    return obj


def devm_kfree(dev: Device, obj: Struct) -> None:
    """Free a devm_kzalloc() struct now."""
    for res in dev.devres:
        if res.match is obj and res.memory is not None:
            dev.devres.remove(res)
            res.memory.slab.kfree(res.memory, stack("devm_kfree", "kfree"))
            return


def devm_add_action(dev: Device, action: Callable[[object], object], data: object) -> None:
    """devm_add_action(): ``action(data)`` runs at unbind, in devres order."""
    kernel = current_kernel()
    devres_add(dev, Devres("devm_action_release", lambda: call(kernel, action, data),
                           match=(action, data)))  # fmt: skip


def devm_add_action_or_reset(dev: Device, action: Callable[[object], object], data: object) -> None:
    """As devm_add_action(); it cannot fail here, so there is nothing to reset."""
    devm_add_action(dev, action, data)


def devm_remove_action(dev: Device, action: Callable[[object], object], data: object) -> None:
    """Drop the action without running it."""
    devres_destroy(dev, "devm_action_release", (action, data))


async def devm_release_action(
    dev: Device, action: Callable[[object], object], data: object
) -> None:
    """Run the action now and drop it."""
    if devres_destroy(dev, "devm_action_release", (action, data)):
        await call(current_kernel(), action, data)
