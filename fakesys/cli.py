"""The ``fakesys`` command."""

from __future__ import annotations

import argparse
import importlib.resources
import logging
import sys

from . import __version__, daemon, record, run
from .scenario import ScenarioError, load

EXIT_USAGE = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fakesys",
        description="Mount a fake /sys and /dev backed by a simulated driver core.",
    )
    parser.add_argument("--version", action="version", version=f"fakesys {__version__}")
    sub = parser.add_subparsers(dest="subcommand", required=True)
    mount = sub.add_parser(
        "mount",
        help="mount a scenario and serve it until a signal",
        description="Mount the tree of a scenario (sys/, dev/, proc/) on MOUNTPOINT, an "
        "existing empty directory, and serve it in the foreground until SIGINT (Ctrl-C), "
        "SIGTERM or SIGHUP, which unmount it.",
    )
    mount.add_argument(
        "mountpoint",
        nargs="?",
        default="mountpoint",
        metavar="MOUNTPOINT",
        help="where to mount (default: ./mountpoint)",
    )
    mount.add_argument(
        "--scenario", help="a shipped scenario's name or a TOML file (default: the built-in one)"
    )
    mount.add_argument(
        "--nonempty",
        action="store_true",
        help="mount on a directory that has contents (the mount hides them)",
    )
    mount.add_argument("--debug", action="store_true", help="log at debug level")
    mount.add_argument("--debug-fuse", action="store_true", help="print libfuse's request trace")
    mount.add_argument(
        "--netlink",
        action="store_true",
        help="broadcast uevents on netlink, as the kernel and udevd would (only in a network "
        "namespace of the mount's own: fakesys run does this)",
    )
    mount.add_argument(
        "--mirror-dev",
        metavar="DIR",
        help="bind the tree's device nodes into DIR as they come and go (fakesys run's /dev)",
    )
    sub.add_parser(
        "scenarios",
        help="list the shipped scenarios",
        description="List the names of the shipped scenarios, for --scenario.",
    )
    record_parser = sub.add_parser(
        "record", help="record this machine's /sys (or some of its devices) as a scenario"
    )
    record_parser.add_argument("-o", "--output", help="the file to write (default: stdout)")
    record_parser.add_argument(
        "--sysfs", default="/sys", help="the sysfs tree to read (default: /sys)"
    )
    record_parser.add_argument(
        "devpaths",
        nargs="*",
        metavar="DEVPATH",
        help="devices to record with what belongs to them, such as /sys/class/net/eth0 "
        "(default: the whole machine)",
    )
    run_parser = sub.add_parser(
        "run",
        help="run a command in a private mount namespace where the fake tree is /sys",
        description="Mount a scenario, then run COMMAND in a private mount namespace where "
        "the tree is /sys, its device nodes are in /dev beside the real ones and "
        "/proc/sys/kernel/tainted is the fake taint; unmount when it exits, with its exit "
        "status. Needs CAP_SYS_ADMIN (root, or a user namespace that grants it).",
    )
    run_parser.add_argument("--scenario", help="a shipped scenario's name or a TOML file")
    run_parser.add_argument(
        "--host-network",
        action="store_true",
        help="keep the host's network namespace (then no netlink uevents are sent)",
    )
    run_parser.add_argument("argv", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.subcommand == "record":
        return record.main(args.output, args.devpaths, args.sysfs)
    if args.subcommand == "scenarios":
        for entry in sorted(importlib.resources.files("fakesys.scenarios").iterdir(), key=str):
            if entry.name.endswith(".toml"):
                print(entry.name.removesuffix(".toml"))
        return 0
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "debug", False) else logging.WARNING,
        format="fakesys: %(levelname)s: %(name)s: %(message)s",
    )
    try:
        scenario = load(args.scenario)
    except ScenarioError as e:
        print(f"fakesys: {e}", file=sys.stderr)
        return EXIT_USAGE
    if args.subcommand == "run":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        return run.main(args.scenario, command, host_network=args.host_network)
    return daemon.run(
        scenario, args.mountpoint, args.debug_fuse, args.netlink, args.mirror_dev, args.nonempty
    )


if __name__ == "__main__":
    sys.exit(main())
