"""The V4L2 unplug RFC's infrastructure ("[PATCH/RFC 1/2] v4l: v4l2-dev: Add infrastructure to
protect device unplug race", Laurent Pinchart, November 2017), as posted: sections of code that
use device resources are marked with :func:`video_device_enter` and :func:`video_device_exit`,
and the driver's unbind calls :func:`video_device_unplug` before it frees those resources.

unplug marks the device as being unplugged, so that later entries fail with ENODEV, and waits
for the sections in flight to exit: up to 150 seconds, after which it WARNs ("Timeout waiting
for device access to complete") and returns anyway, as posted. The RFC leaves blocking
operations unsolved ("need to be unblocked at unbind time. Whether this can be handled entirely
inside video_device_unplug() needs to be researched"): a read sleeping for data inside a
section keeps the unplug waiting until data comes or the time runs out.

One addition answers that question the way Hans Verkuil's review suggested ("as long as the
queue field in struct video_device is filled in properly"): a driver that points ``queue`` at
the wait queue its blocking operations sleep on has them woken by the unplug, so that they see
the mark and leave their section. A driver that leaves ``queue`` NULL gets the RFC as posted.
"""

from __future__ import annotations

from fakesys.linux import (
    WARN,
    SpinLock,
    Struct,
    WaitQueueHead,
    kernel_function,
    msecs_to_jiffies,
    spin_lock,
    spin_unlock,
    wait_event_timeout,
    wake_up,
)

#: How long video_device_unplug() waits for the sections in flight, as posted.
UNPLUG_TIMEOUT_MS = 150000


class VideoDeviceUnplug(Struct, name="video_device", var="vdev"):
    """The RFC's fields of ``struct video_device`` ("unplug handling"), and ``queue``."""

    queue: WaitQueueHead | None
    unplugged: bool
    access_refcount: int
    unplug_lock: SpinLock
    unplug_wait: WaitQueueHead


@kernel_function
def video_device_enter(vdev: VideoDeviceUnplug) -> bool:
    """Start a section that uses device resources; False (the RFC's -ENODEV) once unplug
    has begun."""
    spin_lock(vdev.unplug_lock)
    unplugged = vdev.unplugged
    if not unplugged:
        vdev.access_refcount += 1
    spin_unlock(vdev.unplug_lock)
    return not unplugged


@kernel_function
def video_device_exit(vdev: VideoDeviceUnplug) -> None:
    spin_lock(vdev.unplug_lock)
    vdev.access_refcount -= 1
    woken = vdev.access_refcount == 0
    spin_unlock(vdev.unplug_lock)
    if woken:
        wake_up(vdev.unplug_wait)


@kernel_function
async def video_device_unplug(vdev: VideoDeviceUnplug) -> None:
    """Refuse new sections, wake the blocked operations if the driver said where they sleep,
    and wait for every section to exit."""
    spin_lock(vdev.unplug_lock)
    vdev.unplugged = True
    spin_unlock(vdev.unplug_lock)
    if vdev.queue is not None:
        wake_up(vdev.queue)
    left = await wait_event_timeout(
        vdev.unplug_wait, lambda: not vdev.access_refcount, msecs_to_jiffies(UNPLUG_TIMEOUT_MS)
    )
    WARN(not left, "Timeout waiting for device access to complete")
