"""Open files across unbind, for each lifetime policy, through a real mount.

Each test opens a device node in one process, unbinds the device from another (bash), then
reads, writes and closes in the first, and checks the errnos, the kernel log and the taint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .conftest import Mount, wait_blocked_in_read, wait_until

CTL = "sys/kernel/debug/fakesys"

# The client opens the node, says so, waits for a line on stdin (the unbind happened), then
# reads, writes and closes, and reports what each call did.
CLIENT = """
import errno, json, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print("open", flush=True)
sys.stdin.readline()
result = {}
calls = (("read", lambda: os.read(fd, 16).decode()), ("write", lambda: os.write(fd, b"x")))
for name, call in calls:
    try:
        result[name] = call()
    except OSError as e:
        result[name] = errno.errorcode[e.errno]
os.close(fd)
result["close"] = "ok"
print(json.dumps(result), flush=True)
"""

# policy: (node, driver, read, write)
POLICY_CASES = {
    "refcounted": ("refcounted0", "cdev_refcounted", "ENODEV", "ENODEV"),
    "revoke": ("revoke0", "cdev_revoke", "ENXIO", "ENXIO"),
    "unplug": ("unplug0", "cdev_unplug", "ENODEV", "ENODEV"),
    "irq-devm": ("irqdevm0", "cdev_irq_devm", "ENODEV", "ENODEV"),
    "irq-fixed": ("irqfixed0", "cdev_irq_fixed", "ENODEV", "ENODEV"),
    "modref-racy": ("modracy0", "cdev_modref_racy", "ENODEV", "ENODEV"),
    "modref-locked": ("modlocked0", "cdev_modref_locked", "ENODEV", "ENODEV"),
}


def open_unbind_use(mount: Mount, node: str, driver: str) -> dict[str, object]:
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, f"dev/{node}"],
        cwd=mount.path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None and client.stdin is not None
    assert client.stdout.readline() == "open\n"
    mount.sh(f"echo {driver}.0 > sys/bus/platform/drivers/{driver}/unbind", check=True)
    out, err = client.communicate("go\n", timeout=30)
    assert client.returncode == 0, err
    result: dict[str, object] = json.loads(out)
    return result


def kasan_headers(mount: Mount) -> list[str]:
    return [line for line in mount.kmsg_text() if line.startswith("BUG: KASAN")]


def test_devm_policy_uses_freed_memory(mount: Mount) -> None:
    result = open_unbind_use(mount, "devm0", "cdev_devm")
    # The buggy driver reads its "gone" mark from the freed memory, where it is still set.
    assert result == {"read": "ENODEV", "write": "ENODEV", "close": "ok"}
    headers = kasan_headers(mount)
    # KASAN reports only the first bad access of a boot unless multi-shot is on.
    assert len(headers) == 1
    assert headers[0].startswith("BUG: KASAN: slab-use-after-free in chardev_read+0x")
    assert headers[0].endswith(" [cdev_devm]")
    assert mount.read("proc/sys/kernel/tainted") == "32\n"
    text = mount.kmsg_text()
    start = text.index(next(line for line in text if line.startswith("BUG: KASAN")))
    assert text[start - 1] == "=" * 66
    assert text[start + 1].startswith("Read of size 1 at addr ffff8881")  # bool gone
    assert "Freed by task" in " ".join(text[start:])
    assert any("devres_release_all" in line for line in text[start:])


def test_devm_policy_with_multi_shot_reports_read_write_and_close(mount: Mount) -> None:
    mount.sh(f"echo 1 > {CTL}/kasan_multi_shot", check=True)
    open_unbind_use(mount, "devm0", "cdev_devm")
    functions = [h.split(" in ")[1].split("+")[0] for h in kasan_headers(mount)]
    assert functions == ["chardev_read", "chardev_write", "chardev_release"]


@pytest.mark.parametrize("policy", POLICY_CASES)
def test_fixed_policies_fail_cleanly_after_unbind(mount: Mount, policy: str) -> None:
    node, driver, read, write = POLICY_CASES[policy]
    result = open_unbind_use(mount, node, driver)
    assert result == {"read": read, "write": write, "close": "ok"}
    assert kasan_headers(mount) == []
    assert mount.read("proc/sys/kernel/tainted") == "0\n"
    # and the node is gone, and comes back on bind
    assert not (mount.path / "dev" / node).exists()
    mount.sh(f"echo {driver}.0 > sys/bus/platform/drivers/{driver}/bind", check=True)
    assert (mount.path / "dev" / node).exists()


def wait_readers(mount: Mount, device: str, count: int) -> None:
    """Until ``count`` reads of ``device`` are blocked in its driver."""
    readers = f"{CTL}/devices/{device}/readers"
    assert wait_until(lambda: int(mount.read(readers)) >= count, 20), mount.read(readers)


def background(mount: Mount, script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["bash", "-c", script],
        cwd=mount.path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_revoke_detach_ends_a_blocked_read_with_eio(mount: Mount) -> None:
    reader = background(mount, "head -c 5 dev/revoke0")
    wait_readers(mount, "cdev_revoke.0", 1)
    # sc_dying ends the long wait: the detach does not wait for data that never comes
    mount.sh("echo cdev_revoke.0 > sys/bus/platform/drivers/cdev_revoke/unbind", check=True)
    _, err = reader.communicate(timeout=60)
    assert "Input/output error" in err


def test_unplug_wakes_a_blocked_reader_with_enodev(mount: Mount) -> None:
    reader = background(mount, "head -c 5 dev/unplug0")
    wait_readers(mount, "cdev_unplug.0", 1)
    mount.sh("echo cdev_unplug.0 > sys/bus/platform/drivers/cdev_unplug/unbind", check=True)
    # No data is ever fed: the reader can only end because the unplug woke it.
    _, err = reader.communicate(timeout=60)
    assert "No such device" in err


def test_nonblocking_read_poll_and_data(mount: Mount) -> None:
    out = mount.python(
        f"""
        import errno, os, select, subprocess
        fd = os.open("dev/refcounted0", os.O_RDWR | os.O_NONBLOCK)
        try:
            os.read(fd, 10)
        except BlockingIOError:
            print("EAGAIN")
        p = select.poll()
        p.register(fd, select.POLLIN)
        print(p.poll(0))
        feed = "{CTL}/devices/cdev_refcounted.0/feed"
        subprocess.run(["bash", "-c", "echo -n abc > " + feed], check=True)
        events = p.poll(5000)
        print(events[0][1] & select.POLLIN != 0, os.read(fd, 10).decode())
        print(os.write(fd, b"12345"))
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == ["EAGAIN", "[]", "True abc", "5"]


def test_delay_of_one_device_runs_on_the_engine_clock(mount: Mount) -> None:
    """An hour's delay in one device's reads: another device reads meanwhile, and
    ``advance_clock`` ends the delay."""
    mount.write(f"{CTL}/devices/cdev_refcounted.0/delay/read", "3600000")
    for name in ("refcounted", "unplug"):
        mount.write(f"{CTL}/devices/cdev_{name}.0/feed", name)
    delayed = background(mount, "head -c 10 dev/refcounted0")
    wait_blocked_in_read(delayed.pid)
    assert mount.sh("head -c 6 dev/unplug0", check=True).stdout == "unplug"
    assert mount.read(f"{CTL}/delay/read") == "0\n"
    mount.sh(f"echo 3600 > {CTL}/advance_clock", check=True)
    out, err = delayed.communicate(timeout=30)
    assert (out, err, delayed.returncode) == ("refcounted", "", 0)


def test_rmmod_is_refused_while_a_node_is_open(mount: Mount) -> None:
    refcnt = "sys/module/cdev_refcounted/refcnt"
    rmmod = f"echo cdev_refcounted > {CTL}/delete_module"
    holder = background(mount, "exec 3<dev/refcounted0; echo open; read -r _")
    assert holder.stdout is not None
    assert holder.stdout.readline() == "open\n"
    assert mount.read(refcnt) == "2\n"  # cdev->owner and fops->owner
    refused = mount.sh(rmmod)
    assert "Resource temporarily unavailable" in refused.stderr  # EWOULDBLOCK
    holder.communicate("\n", timeout=10)
    assert mount.read(refcnt) == "0\n"
    mount.sh(rmmod, check=True)
    assert not (mount.path / "sys/module/cdev_refcounted").exists()
    assert not (mount.path / "dev/refcounted0").exists()
    assert "No such file or directory" in mount.sh(rmmod).stderr
    mount.sh(f"echo cdev_refcounted > {CTL}/init_module", check=True)
    assert (mount.path / "dev/refcounted0").exists()
    assert "File exists" in mount.sh(f"echo cdev_refcounted > {CTL}/init_module").stderr


def test_blocked_reader_on_a_node_exits_on_sigint(mount: Mount) -> None:
    reader = subprocess.Popen(
        [sys.executable, "-c", "import os; os.read(os.open('dev/refcounted0', os.O_RDONLY), 1)"],
        cwd=mount.path,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_readers(mount, "cdev_refcounted.0", 1)
    reader.send_signal(2)
    # No data is ever fed: the read can only end because the signal interrupted it.
    _, err = reader.communicate(timeout=60)
    assert "KeyboardInterrupt" in err


HOLDER = textwrap.dedent(
    """
    import os, sys, threading
    n = int(sys.argv[1])
    ready = threading.Barrier(n + 1)
    def reader():
        fd = os.open("dev/refcounted0", os.O_RDONLY)
        ready.wait()
        os.read(fd, 1)
    for _ in range(n):
        threading.Thread(target=reader, daemon=True).start()
    ready.wait()
    print("blocked", flush=True)
    sys.stdin.readline()
    """
)


def test_the_tree_answers_with_500_blocked_readers(mount: Mount, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, "500"],
        cwd=mount.path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "blocked\n"
        wait_readers(mount, "cdev_refcounted.0", 500)
        # Answering at all is the point: with every worker held by a reader, these would hang.
        assert mount.read("sys/devices/platform/foo.0/uevent").startswith("DRIVER=foo")
        (mount.path / "sys/bus/platform/drivers/foo/unbind").stat()
        mount.sh("echo foo.0 > sys/bus/platform/drivers/foo/unbind", check=True)
    finally:
        holder.kill()
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
        if holder.stdin is not None:
            holder.stdin.close()
