"""Uevents on netlink, as programs on a real machine receive them: the kernel's multicast
group (lib/kobject_uevent.c) and the one udevd sends on after handling each event.

Only for a network namespace of its own (``fakesys run``): whatever is sent here reaches every
uevent socket of the namespace, and in the host's that would be the host's udevd, so the host's
is refused where it can be recognized.

Kernel group (1). A uevent socket only accepts multicast from the kernel (libudev drops group-1
messages whose sender port is not 0), and since Linux 4.18 the kernel takes uevents from
userspace for exactly this: a process with CAP_SYS_ADMIN over the namespace's owner sends a
netlink request with ``ACTION@DEVPATH`` and the ``KEY=VALUE`` strings to the kernel's uevent
socket, and uevent_net_rcv() appends ``SEQNUM=`` from the kernel's own counter and broadcasts
the message in that namespace with port 0, as if the kernel had sent it. That counter is the
host's, global to all namespaces; the fake machine takes the number the host gave each event as
its SEQNUM (read back from the rebroadcast message), so every view of an event (netlink, the
``uevents`` stream, ``/sys/kernel/uevent_seqnum``) carries the same number, with gaps where the
host sent events of its own, as a container sees on a real kernel.

Udev group (2). With no udevd in the namespace, fakesys plays its part: after each kernel event
it sends what systemd-udevd 252 (Debian 12) broadcasts for that event when no rule adds anything:
the ``libudev`` header (magic 0xfeedcafe, the properties' offset and length, MurmurHash2 of
SUBSYSTEM and DEVTYPE for the receivers' socket filters, an empty tag bloom filter), then
``UDEV_DATABASE_VERSION=1``, the kernel's variables with DEVNAME as an absolute path and MAJOR
and MINOR moved after SEQNUM, then USEC_INITIALIZED (CLOCK_MONOTONIC microseconds of the
device's first event, kept until its ``remove``). Receivers check that the sender is uid 0,
which the daemon is.

Limitations: no udev rules run, so no ``ID_*`` properties, tags, DEVLINKS or symlinks below
/dev, and no udev database in /run/udev/data (``udevadm info`` shows only the kernel's
variables). In a namespace owned by the initial user namespace the host's own uevents (a FUSE
mount's ``bdi`` device, a loop device) also arrive on the kernel group, as they do in a rootful
container; they never arrive on the udev group.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .kernel.kobject_uevent import KOBJ_REMOVE, Env

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger(__name__)

NETLINK_KOBJECT_UEVENT = 15
NET_NS_INIT_INO = 0xEFFFFFF9  # include/uapi/linux/nsfs.h
UEVENT_GROUP_KERNEL = 1
UEVENT_GROUP_UDEV = 2
NLMSG_HDR = struct.Struct("=IHHII")  # struct nlmsghdr
NLMSG_ERROR = 2
NLMSG_MIN_TYPE = 0x10  # netlink_rcv_skb() skips control messages below this
NLM_F_REQUEST = 1
NLM_F_ACK = 4
MESSAGE_MAX = 8192  # what libudev reads of one message
RECEIVE_BUFFER = 1 << 20  # room for the host's events that arrive between two sends

UDEV_MONITOR_MAGIC = 0xFEEDCAFE
# struct monitor_netlink_header (sd-device/device-monitor.c): the prefix, the magic and the
# hashes in network order, the sizes and offsets in host order.
UDEV_HEADER = struct.Struct("=8s4sIII4s4s4s4s")
UDEV_DATABASE_VERSION = "1"


def murmur_hash2(data: bytes, seed: int = 0) -> int:
    """MurmurHash2 (32-bit, little-endian words), which libudev uses for its filter hashes."""
    m = 0x5BD1E995
    mask = 0xFFFFFFFF
    h = (seed ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for (word,) in struct.iter_unpack("<I", data[:whole]):
        k = (word * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if tail:
        for i in reversed(range(len(tail))):
            h ^= tail[i] << (8 * i)
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    return h ^ (h >> 15)


def _nulstr(variables: Env) -> bytes:
    return b"".join(f"{key}={value}".encode() + b"\0" for key, value in variables)


def kernel_message(action: str, devpath: str, variables: Env) -> bytes:
    """The payload of a kernel uevent (alloc_uevent_skb()): ``ACTION@DEVPATH`` and the
    variables, each NUL-terminated."""
    return f"{action}@{devpath}".encode() + b"\0" + _nulstr(variables)


def udev_properties(variables: Env, usec_initialized: int | None) -> Env:
    """The properties udevd broadcasts for a kernel event, in its order."""
    kernel = [(k, f"/dev/{v}" if k == "DEVNAME" else v) for k, v in variables]
    devnum = [(k, v) for k, v in kernel if k in ("MAJOR", "MINOR")]
    properties = [("UDEV_DATABASE_VERSION", UDEV_DATABASE_VERSION)]
    properties += [(k, v) for k, v in kernel if k not in ("MAJOR", "MINOR")] + devnum
    if usec_initialized is not None:
        properties.append(("USEC_INITIALIZED", str(usec_initialized)))
    return properties


def udev_message(properties: Env) -> bytes:
    """A udev-group message: the libudev header, then the properties."""
    values = dict(properties)
    body = _nulstr(properties)

    def hashed(key: str) -> bytes:
        value = values.get(key)
        return struct.pack(">I", murmur_hash2(value.encode()) if value is not None else 0)

    header = UDEV_HEADER.pack(
        b"libudev",
        struct.pack(">I", UDEV_MONITOR_MAGIC),
        UDEV_HEADER.size,
        UDEV_HEADER.size,
        len(body),
        hashed("SUBSYSTEM"),
        hashed("DEVTYPE"),
        bytes(4),
        bytes(4),
    )
    return header + body


def in_initial_network_namespace() -> bool:
    """Whether this is the host's network namespace, as far as can be told: init's (if its
    /proc entry can be read), or the fixed inode of init_net (NET_NS_INIT_INO, Linux 6.x)."""
    own = os.stat("/proc/self/ns/net")
    try:
        return os.path.samestat(own, os.stat("/proc/1/ns/net"))
    except OSError:
        return own.st_ino == NET_NS_INIT_INO


class UeventNetlink:
    """The two multicast groups of NETLINK_KOBJECT_UEVENT in this network namespace, fed with
    the fake kernel's events. :meth:`attach` before boot, so that every event goes out."""

    def __init__(self) -> None:
        if in_initial_network_namespace():
            raise OSError(
                errno.EPERM, "this is init's network namespace: its udevd would get the events"
            )
        self._sender = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_KOBJECT_UEVENT)
        self._sender.bind((0, 0))
        self._sender.setblocking(False)
        # The kernel's rebroadcast of each injected event, to learn the SEQNUM it was given.
        self._echo = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_KOBJECT_UEVENT)
        self._echo.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self._echo.bind((0, UEVENT_GROUP_KERNEL))
        self._echo.setblocking(False)
        self._sequence = 0
        #: When udevd first saw each device (its database's USEC_INITIALIZED), by DEVPATH.
        self._initialized: dict[str, int] = {}

    def attach(self, kernel: Kernel) -> None:
        kernel.uevent_net_broadcast = self.kobject_uevent_net_broadcast
        kernel.uevent_listeners.append(self.udev_broadcast)

    def kobject_uevent_net_broadcast(self, action: str, devpath: str, variables: Env) -> int | None:
        """Send one event on the kernel group through the kernel; returns the SEQNUM the
        kernel appended, or None if the kernel refused it (logged; too big is EINVAL)."""
        message = kernel_message(action, devpath, variables)
        self._sequence += 1
        request = NLMSG_HDR.pack(
            NLMSG_HDR.size + len(message),
            NLMSG_MIN_TYPE,
            NLM_F_REQUEST | NLM_F_ACK,
            self._sequence,
            0,
        )
        try:
            for _ in self._echoes():  # what came before is not ours
                pass
            self._sender.sendto(request + message, (0, 0))
            self._check_ack()
            # The kernel broadcast it before sendto() returned (uevent_net_rcv() runs in the
            # sender's context): it is queued by now, maybe behind events of the host's.
            for echoed in self._echoes():
                seqnum = echoed.removeprefix(message)
                if seqnum != echoed and seqnum.startswith(b"SEQNUM="):
                    return int(seqnum.removeprefix(b"SEQNUM=").rstrip(b"\0"))
            reason = "the kernel did not rebroadcast it"
        except OSError as e:
            reason = e.strerror or str(e)
        log.warning("uevent %s@%s not sent on netlink: %s", action, devpath, reason)
        return None

    def _check_ack(self) -> None:
        """The kernel's answer to the request (netlink_ack()): raises its error."""
        reply = self._sender.recv(MESSAGE_MAX)
        _, kind, _, _, _ = NLMSG_HDR.unpack_from(reply)
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", reply, NLMSG_HDR.size)
            if error:
                raise OSError(-error, os.strerror(-error))

    def _echoes(self) -> Iterator[bytes]:
        """The messages queued on the echo socket, until there is none."""
        while True:
            try:
                yield self._echo.recv(MESSAGE_MAX)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno != errno.ENOBUFS:  # ENOBUFS: host events were dropped; go on
                    raise

    def udev_broadcast(self, variables: Env) -> None:
        """What udevd sends once it has handled the event (a uevent listener)."""
        values = dict(variables)
        devpath = values["DEVPATH"]
        if values["ACTION"] == KOBJ_REMOVE:
            usec: int | None = self._initialized.pop(devpath, None)
        else:
            usec = self._initialized.setdefault(devpath, time.monotonic_ns() // 1000)
        try:
            self._sender.sendto(
                udev_message(udev_properties(variables, usec)), (0, UEVENT_GROUP_UDEV)
            )
        except OSError as e:
            log.warning("udev event for %s not sent: %s", devpath, e.strerror)
