"""Uevents (lib/kobject_uevent.c): the variables of each event and its sequence number.

Every event gets ``ACTION``, ``DEVPATH`` and ``SUBSYSTEM``, then the object's own variables,
then ``SEQNUM``. ``Kernel.uevent_net_broadcast``, when set, sends the event on netlink first
and may give the sequence number (the kernel that rebroadcasts it numbers it); listeners (the
uevent stream, a uevent helper) then receive the finished list.
Writing an action to a ``uevent`` file synthesizes an event with ``SYNTH_UUID``.
"""

from __future__ import annotations

import contextlib
import errno
import re
import subprocess
from typing import TYPE_CHECKING

import trio

from ..kernfs import ErrnoError
from .printk import KERN_WARNING

if TYPE_CHECKING:
    from .kernel import Kernel

KOBJ_ADD = "add"
KOBJ_REMOVE = "remove"
KOBJ_CHANGE = "change"
KOBJ_MOVE = "move"
KOBJ_ONLINE = "online"
KOBJ_OFFLINE = "offline"
KOBJ_BIND = "bind"
KOBJ_UNBIND = "unbind"
KOBJECT_ACTIONS = (
    KOBJ_ADD,
    KOBJ_REMOVE,
    KOBJ_CHANGE,
    KOBJ_MOVE,
    KOBJ_ONLINE,
    KOBJ_OFFLINE,
    KOBJ_BIND,
    KOBJ_UNBIND,
)

Env = list[tuple[str, str]]


def kobject_uevent(
    kernel: Kernel,
    action: str,
    devpath: str,
    subsystem: str,
    env: Env,
    extra: Env | None = None,
) -> Env:
    """Send one event; returns its variables."""
    variables = [("ACTION", action), ("DEVPATH", devpath), ("SUBSYSTEM", subsystem)]
    variables += extra or []
    variables += [kv for kv in env if not (action == KOBJ_UNBIND and kv[0] == "MODALIAS")]
    seqnum = None
    if kernel.uevent_net_broadcast is not None:
        seqnum = kernel.uevent_net_broadcast(action, devpath, variables)
    kernel.uevent_seqnum = seqnum if seqnum is not None else kernel.uevent_seqnum + 1
    variables.append(("SEQNUM", str(kernel.uevent_seqnum)))
    for listener in kernel.uevent_listeners:
        listener(variables)
    if kernel.uevent_helper:
        kernel.spawn(lambda: _run_uevent_helper(kernel.uevent_helper, subsystem, variables))
    return variables


async def _run_uevent_helper(helper: str, subsystem: str, variables: Env) -> None:
    """call_usermodehelper(UMH_NO_WAIT): ``helper SUBSYSTEM`` with the event as environment,
    plus HOME and PATH (init_uevent_argv() and kobject_uevent_env())."""
    env = {"HOME": "/", "PATH": "/sbin:/bin:/usr/sbin:/usr/bin", **dict(variables)}
    with contextlib.suppress(OSError):
        await trio.run_process(
            [helper, subsystem],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_ARG_KEY = re.compile(r"^[A-Za-z0-9_]+$")


def kobject_synth_uevent(
    kernel: Kernel, devpath: str, subsystem: str, env: Env, buf: bytes
) -> None:
    """``echo add [UUID [KEY=VALUE...]] > uevent`` (kobject_synth_uevent()).

    Only broadcasts an event; nothing is re-added or re-probed.
    """
    text = buf.decode("latin-1")
    if text.endswith(("\n", "\0")):
        text = text[:-1]
    action, _, args = text.partition(" ")
    if action not in KOBJECT_ACTIONS:
        _synth_fail(kernel, devpath, "unknown uevent action string")
    extra: Env = [("SYNTH_UUID", "0")]
    if args:
        words = args.split()
        if not words or not _UUID.match(words[0]):
            _synth_fail(kernel, devpath, "incorrect uevent action arguments")
        extra = [("SYNTH_UUID", words[0])]
        for word in words[1:]:
            key, eq, value = word.partition("=")
            if not eq or not _ARG_KEY.match(key):
                _synth_fail(kernel, devpath, "incorrect uevent action arguments")
            extra.append((f"SYNTH_ARG_{key}", value))
    kobject_uevent(kernel, action, devpath, subsystem, env, extra)


def _synth_fail(kernel: Kernel, devpath: str, message: str) -> None:
    kernel.log.emit(KERN_WARNING, f"synth uevent: {devpath}: {message}")
    raise ErrnoError(errno.EINVAL)
