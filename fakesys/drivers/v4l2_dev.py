"""The V4L2 unplug RFC's infrastructure ("v4l: v4l2-dev: Add infrastructure to protect device
unplug race", Laurent Pinchart): sections of code that use device resources are marked with
:func:`video_device_enter` and :func:`video_device_exit`, and the driver's unbind calls
:func:`video_device_unplug` before it frees those resources.

unplug marks the device as being unbound, so that later entries fail, and waits for the
sections in flight to exit. The RFC as posted leaves blocking operations unsolved ("need to
be unblocked at unbind time"); here unplug also wakes ``wait``, the queue the driver's
blocking operations sleep on, so that they see the mark and leave their section.
"""

from __future__ import annotations

from fakesys.linux import (
    Completion,
    Struct,
    WaitQueueHead,
    complete,
    init_completion,
    kernel_function,
    wait_for_completion,
    wake_up,
)


class VideoDeviceUnplug(Struct, name="video_device", var="vdev"):
    """The RFC's fields of ``struct video_device``."""

    unplugged: bool
    access_refcount: int
    unplugged_completion: Completion


def video_device_init(vdev: VideoDeviceUnplug) -> None:
    init_completion(vdev.unplugged_completion)


@kernel_function
def video_device_enter(vdev: VideoDeviceUnplug) -> bool:
    """Start a section that uses device resources; False once unplug has begun."""
    if vdev.unplugged:
        return False
    vdev.access_refcount += 1
    return True


@kernel_function
def video_device_exit(vdev: VideoDeviceUnplug) -> None:
    vdev.access_refcount -= 1
    if vdev.unplugged and not vdev.access_refcount:
        complete(vdev.unplugged_completion)


@kernel_function
async def video_device_unplug(vdev: VideoDeviceUnplug, wait: WaitQueueHead) -> None:
    """Refuse new sections, wake the blocked ones, and wait for every section to exit."""
    vdev.unplugged = True
    wake_up(wait)
    if vdev.access_refcount:
        await wait_for_completion(vdev.unplugged_completion)
