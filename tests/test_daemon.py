"""The daemon's life: clean shutdown, stale mounts, interrupted and polled readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fakesys._mounts import mounted_fstype

from .conftest import Mount, fakesys_command, fuse_usable, wait_blocked_in_read, wait_until

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")


def reader_process(mount: Mount, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=mount.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_unmounts_cleanly(tmp_path: Path, signum: signal.Signals) -> None:
    m = Mount.start(tmp_path / "mnt", stderr_path=tmp_path / "err")
    assert mounted_fstype(str(m.path)) == "fuse.fakesys"
    m.process.send_signal(signum)
    assert m.process.wait(timeout=10) == 0
    assert mounted_fstype(str(m.path)) is None
    m.stop()


def test_blocked_reader_is_interrupted_by_sigint(mount: Mount) -> None:
    proc = reader_process(
        mount,
        """
        import os
        fd = os.open("dev/kmsg", os.O_RDONLY)
        print("blocking", flush=True)
        try:
            while True:  # the backlog, then a read that blocks
                os.read(fd, 8192)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        """,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "blocking\n"
    wait_blocked_in_read(proc.pid)
    proc.send_signal(signal.SIGINT)
    # Nothing is logged meanwhile: the read can only end because the signal interrupted it.
    out, _ = proc.communicate(timeout=60)
    assert out == "interrupted\n"


def test_blocked_cat_dies_promptly_on_sigkill(mount: Mount) -> None:
    proc = subprocess.Popen(["cat", "dev/kmsg"], cwd=mount.path, stdout=subprocess.DEVNULL)
    wait_blocked_in_read(proc.pid)
    proc.kill()
    assert proc.wait(timeout=60) == -signal.SIGKILL


def test_poll_wakes_on_a_new_record(mount: Mount) -> None:
    proc = reader_process(
        mount,
        """
        import os, select, sys
        fd = os.open("dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        while True:
            try:
                os.read(fd, 8192)
            except BlockingIOError:
                break
        p = select.poll()
        p.register(fd, select.POLLIN)
        print("idle" if p.poll(0) == [] else "busy", flush=True)
        events = p.poll(10000)
        message = os.read(fd, 8192).decode().split(";", 1)[1]
        print(events[0][1] & select.POLLIN != 0, message, end="")
        """,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "idle\n"
    mount.sh("echo wake up > dev/kmsg", check=True)
    out, err = proc.communicate(timeout=10)
    assert out == "True wake up\n", err


def test_sigterm_wakes_blocked_readers_with_enodev(tmp_path: Path) -> None:
    m = Mount.start(tmp_path / "mnt", stderr_path=tmp_path / "err")
    try:
        proc = reader_process(
            m,
            """
            import errno, os
            fd = os.open("dev/refcounted0", os.O_RDONLY)
            print("open", flush=True)
            try:
                while True:
                    os.read(fd, 8192)
            except OSError as e:
                print(errno.errorcode[e.errno], flush=True)
            """,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == "open\n"
        readers = m / "sys/kernel/debug/fakesys/devices/cdev_refcounted.0/readers"
        assert wait_until(lambda: readers.read_text() == "1\n")
        status = m.stop()
        out, _ = proc.communicate(timeout=5)
    finally:
        m.stop()
    assert status == 0
    assert out == "ENODEV\n"


STALE_FS = """
import os, sys, pyfuse3, trio
class Ops(pyfuse3.Operations):
    pass
pyfuse3.init(Ops(), sys.argv[1], {"fsname=fakesys", "subtype=fakesys"})
print("mounted", flush=True)
trio.run(pyfuse3.main)
"""


def test_a_stale_mount_is_cleared_and_a_live_one_refused(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    dead = subprocess.Popen(
        [sys.executable, "-c", STALE_FS, str(mnt)], stdout=subprocess.PIPE, text=True
    )
    assert dead.stdout is not None
    assert dead.stdout.readline() == "mounted\n"
    dead.kill()
    dead.wait()
    dead.stdout.close()
    with pytest.raises(OSError, match="Transport endpoint is not connected"):
        os.stat(mnt)  # the daemon is gone, the mount is not
    m = Mount.start(mnt, stderr_path=tmp_path / "err")
    try:
        assert "detaching a stale fakesys mount" in m.daemon_stderr()
        assert (mnt / "sys" / "bus").is_dir()
        second = fakesys_command("mount", str(mnt))
        assert second.returncode == 1
        assert "a running fakesys is already mounted there" in second.stderr
        assert (mnt / "sys" / "bus").is_dir()
    finally:
        m.stop()
    assert wait_until(lambda: mounted_fstype(str(mnt)) is None)


def test_the_tree_answers_while_readers_are_blocked(mount: Mount) -> None:
    readers = [subprocess.Popen(["cat", "dev/kmsg"], cwd=mount.path, stdout=subprocess.DEVNULL)
               for _ in range(50)]  # fmt: skip
    try:
        for r in readers:
            wait_blocked_in_read(r.pid)
        assert mount.read("sys/devices/platform/foo.0/uevent").startswith("DRIVER=foo")
        mount.sh("echo foo.0 > sys/bus/platform/drivers/foo/unbind", check=True)
    finally:
        for r in readers:
            r.kill()
            r.wait()
