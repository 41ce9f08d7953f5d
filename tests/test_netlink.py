"""The netlink uevent formats, against what systemd-udevd 252 (Debian 12) was seen to send,
and the SEQNUM a netlink broadcast gives an event."""

from __future__ import annotations

import pytest

from fakesys import scenario
from fakesys.kernel import Kernel
from fakesys.kernel.kobject_uevent import Env
from fakesys.netlink import kernel_message, murmur_hash2, udev_message, udev_properties

# The filter hashes in udevd's headers for these SUBSYSTEM and DEVTYPE values.
UDEVD_HASHES = {
    "misc": 0x4B1A4E75,
    "tty": 0x8AFA90C8,
    "usb_device": 0x27F8F50C,
    "hotplug": 0x120DB38F,
    "module": 0x38E3A30F,
    "x": 0x16357CE4,
}

# udevd, with no rules, handling the kernel event ACTION=add DEVPATH=/devices/virtual/misc/foo
# SUBSYSTEM=misc DEVNAME=foo MAJOR=10 MINOR=99 DRIVER=bar MODALIAS=x:y SEQNUM=1232: the message
# it broadcast on the udev group.
UDEVD_HEADER = bytes.fromhex(
    "6c69627564657600feedcafe2800000028000000b60000004b1a4e75000000000000000000000000"
)
UDEVD_PROPERTIES = [
    "UDEV_DATABASE_VERSION=1", "ACTION=add", "DEVPATH=/devices/virtual/misc/foo",
    "SUBSYSTEM=misc", "DEVNAME=/dev/foo", "DRIVER=bar", "MODALIAS=x:y", "SEQNUM=1232",
    "MAJOR=10", "MINOR=99", "USEC_INITIALIZED=869864687",
]  # fmt: skip
KERNEL_EVENT: Env = [
    ("ACTION", "add"), ("DEVPATH", "/devices/virtual/misc/foo"), ("SUBSYSTEM", "misc"),
    ("DEVNAME", "foo"), ("MAJOR", "10"), ("MINOR", "99"), ("DRIVER", "bar"),
    ("MODALIAS", "x:y"), ("SEQNUM", "1232"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), UDEVD_HASHES.items())
def test_murmur_hash2_is_libudevs(text: str, expected: int) -> None:
    assert murmur_hash2(text.encode()) == expected


def test_the_udev_message_is_the_one_udevd_sent() -> None:
    properties = udev_properties(KERNEL_EVENT, usec_initialized=869864687)
    assert [f"{k}={v}" for k, v in properties] == UDEVD_PROPERTIES
    body = b"".join(p.encode() + b"\0" for p in UDEVD_PROPERTIES)
    assert udev_message(properties) == UDEVD_HEADER + body


def test_a_remove_never_seen_before_has_no_initialization_time() -> None:
    properties = udev_properties([("ACTION", "remove"), ("SUBSYSTEM", "x")], None)
    assert "USEC_INITIALIZED" not in dict(properties)


def test_the_kernel_message_is_action_at_devpath_then_the_variables() -> None:
    assert kernel_message("add", "/module/m", [("ACTION", "add"), ("SUBSYSTEM", "module")]) == (
        b"add@/module/m\0ACTION=add\0SUBSYSTEM=module\0"
    )


async def test_the_seqnum_is_the_one_the_broadcast_returns() -> None:
    sent: list[tuple[str, str, Env]] = []
    numbers = iter([1000, None, *range(5000, 6000)])

    def broadcast(action: str, devpath: str, variables: Env) -> int | None:
        sent.append((action, devpath, list(variables)))
        return next(numbers)

    seen: list[Env] = []

    def configure(kernel: Kernel) -> None:
        kernel.uevent_net_broadcast = broadcast
        kernel.uevent_listeners.append(seen.append)

    kernel = await scenario.boot(scenario.load("usb-hotplug"), configure=configure)
    assert all("SEQNUM" not in dict(variables) for _, _, variables in sent)
    seqnums = [int(dict(env)["SEQNUM"]) for env in seen]
    assert seqnums[:2] == [1000, 1001]  # refused: the fake's own counter goes on
    assert seqnums[2:] == list(range(5000, 5000 + len(seqnums) - 2))
    assert kernel.uevent_seqnum == seqnums[-1]
    assert [(a, d) for a, d, _ in sent] == [(dict(e)["ACTION"], dict(e)["DEVPATH"]) for e in seen]
