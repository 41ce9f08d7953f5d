"""Open files across unbind, for each lifetime policy, through a real mount.

Each test opens a device node in one process, unbinds the device from another (bash), then
reads, writes and closes in the first, and checks the errnos, the kernel log and the taint.
"""

from __future__ import annotations

import json
import re
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


RFC_UNBIND = "echo cdev_unplug_rfc.0 > sys/bus/platform/drivers/cdev_unplug_rfc/unbind"


def rfc_unbind_behind_a_blocked_reader(mount: Mount) -> tuple[subprocess.Popen[str], ...]:
    """A read of dev/unplugrfc0 blocked for data, then an unbind that has reached remove()."""
    reader = background(mount, "head -c 5 dev/unplugrfc0")
    wait_readers(mount, "cdev_unplug_rfc.0", 1)
    unbinder = background(mount, RFC_UNBIND)
    # driver_sysfs_remove() takes the driver link away just before remove(), whose first
    # step is the unplug
    driver_link = mount.path / "sys/bus/platform/devices/cdev_unplug_rfc.0/driver"
    assert wait_until(lambda: not driver_link.exists())
    return reader, unbinder


def test_unplug_as_posted_waits_for_a_blocked_reader_until_data_comes(mount: Mount) -> None:
    """The RFC as posted leaves blocking operations alone: video_device_unplug() waits for
    the reader's section, which ends only when data arrives."""
    reader, unbinder = rfc_unbind_behind_a_blocked_reader(mount)
    assert unbinder.poll() is None  # in video_device_unplug(), waiting for the section
    mount.write(f"{CTL}/devices/cdev_unplug_rfc.0/feed", "hello")
    assert reader.communicate(timeout=60) == ("hello", "")
    unbinder.communicate(timeout=60)
    assert unbinder.returncode == 0
    assert not any("WARNING" in line for line in mount.kmsg_text())
    assert mount.read("proc/sys/kernel/tainted") == "0\n"


def test_unplug_as_posted_gives_up_after_150_s_with_a_warning(mount: Mount) -> None:
    """With no data, the unplug waits 150 s (of the engine's clock: advance_clock), WARNs and
    returns; remove() frees the device under the reader, which sleeps on until a signal."""
    reader, unbinder = rfc_unbind_behind_a_blocked_reader(mount)
    mount.sh(f"echo 150 > {CTL}/advance_clock", check=True)
    unbinder.communicate(timeout=60)
    assert unbinder.returncode == 0
    text = mount.kmsg_text()
    cut = text.index("------------[ cut here ]------------")
    assert text[cut + 1] == "Timeout waiting for device access to complete"
    assert re.fullmatch(
        r"WARNING: CPU: 0 PID: \d+ at fakesys/drivers/v4l2_dev\.py:\d+ "
        r"video_device_unplug\+0x[0-9a-f]+/0x[0-9a-f]+",
        text[cut + 2],
    )
    # __warn() → show_regs(): RIP is the function, and the trace unwinds from its caller
    assert text[text.index("Call Trace:", cut) - 1].startswith("RIP: 0010:video_device_unplug+")
    trace = text[text.index(" <TASK>", cut) + 1 : text.index(" </TASK>", cut)]
    assert trace[0].startswith(" unplug_remove+") and trace[0].endswith(" [cdev_unplug_rfc]")
    assert mount.read("proc/sys/kernel/tainted") == "512\n"  # W
    assert mount.read(f"{CTL}/devices/cdev_unplug_rfc.0/readers") == "1\n"  # still asleep
    reader.terminate()
    reader.communicate(timeout=60)
    assert wait_until(lambda: mount.read(f"{CTL}/devices/cdev_unplug_rfc.0/readers") == "0\n")
    assert not any(line.startswith("BUG: KASAN") for line in mount.kmsg_text())


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


CLOSER = "import os, sys, time; os.close(os.open(sys.argv[1], os.O_RDONLY)); time.sleep(30)"


def held_close(mount: Mount, node: str) -> subprocess.Popen[str]:
    """A process that opens and closes ``node`` and then sleeps, its close's release stopped
    at ``hold/close_return``: after the driver's module_put(), before it returns."""
    mount.write(f"{CTL}/hold/close_return", "1")
    closer = subprocess.Popen(
        [sys.executable, "-c", CLOSER, f"dev/{node}"],
        cwd=mount.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert wait_until(lambda: mount.read(f"{CTL}/hold/close_return") == "held\n", 20)
    return closer


def test_a_module_that_drops_its_count_in_its_close_can_go_before_it_returns(
    mount: Mount,
) -> None:
    """Keith Owens, 2002: "the module does MOD_DEC_USE_COUNT() which can take the count to 0
    but the close routine has not returned from the module yet". The unload goes through, and
    the close returns into freed text: an oops on the instruction fetch, and the closing task
    is killed (page_fault_oops(): SIGKILL)."""
    closer = held_close(mount, "closeracy0")
    assert mount.read("sys/module/cdev_close_racy/refcnt") == "0\n"
    mount.sh(f"echo cdev_close_racy > {CTL}/delete_module", check=True)
    assert not (mount.path / "sys/module/cdev_close_racy").exists()
    mount.write(f"{CTL}/hold/close_return", "0")
    closer.communicate(timeout=60)
    assert closer.returncode == -9  # SIGKILL
    text = mount.kmsg_text()
    fault = text.index(next(line for line in text if line.startswith("BUG: unable to handle")))
    assert text[fault + 1 : fault + 3] == [
        "#PF: supervisor instruction fetch in kernel mode",
        "#PF: error_code(0x0010) - not-present page",
    ]
    assert text[fault + 4].startswith("Oops: Oops: 0010 [#1] PREEMPT SMP KASAN")
    assert re.fullmatch(r"RIP: 0010:0xffffffffc[0-9a-f]{7}", text[fault + 7])
    assert text[fault + 8].startswith("Code: Unable to access opcode bytes at 0xffffffffc")
    trace = text[text.index(" <TASK>", fault) + 1 : text.index(" </TASK>", fault)]
    # the freed module's frames cannot be unwound: what follows is a guess, marked "?"
    guessed = [line.split("+")[0] for line in trace[6:9]]
    assert guessed == [" ? __fput", " ? task_work_run", " ? syscall_exit_to_user_mode"]
    assert not any("cdev_close_racy]" in line for line in trace)
    modules = next(line for line in text[fault:] if line.startswith("Modules linked in:"))
    assert modules.endswith(" [last unloaded: cdev_close_racy]")
    assert int(mount.read("proc/sys/kernel/tainted")) & 1 << 7  # D
    mount.sh(f"echo cdev_close_racy > {CTL}/init_module", check=True)


def test_the_caller_holding_the_count_around_close_keeps_rmmod_out(mount: Mount) -> None:
    """The fix: the file operations name their owner, so chrdev_open() pinned the module for
    the file (cdev->owner and fops->owner) and __fput() lets go only after ->release()."""
    closer = held_close(mount, "closeheld0")
    assert mount.read("sys/module/cdev_close_held/refcnt") == "2\n"
    rmmod = f"echo cdev_close_held > {CTL}/delete_module"
    assert "Resource temporarily unavailable" in mount.sh(rmmod).stderr
    mount.write(f"{CTL}/hold/close_return", "0")
    assert wait_until(lambda: mount.read("sys/module/cdev_close_held/refcnt") == "0\n")
    mount.sh(rmmod, check=True)
    closer.kill()
    closer.communicate(timeout=60)
    assert not any(line.startswith("BUG:") for line in mount.kmsg_text())
    assert mount.read("proc/sys/kernel/tainted") == "0\n"


def kasan_track(text: list[str], title: str) -> list[str]:
    """The functions of the first report's ``<title> by task N:`` stack."""
    start = text.index(next(line for line in text if line.startswith(f"{title} by task ")))
    end = text.index("", start)
    return [line.strip().split("+")[0] for line in text[start + 1 : end]]


def devm_use_after_unbind(mount: Mount) -> list[str]:
    result = open_unbind_use(mount, "devm0", "cdev_devm")
    assert result["read"] == "ENODEV"
    return mount.kmsg_text()


# mm/kasan/common.c: the track is saved from __kasan_kmalloc(); devm_kmalloc() allocates with
# __kmalloc_node_track_caller_noprof() since v6.10's memory allocation profiling.
ALLOC_HEAD = ["kasan_save_stack", "kasan_save_track", "__kasan_kmalloc",
              "__kmalloc_node_track_caller_noprof", "devm_kmalloc", "chardev_probe",
              "platform_probe", "really_probe", "__driver_probe_device",
              "driver_probe_device"]  # fmt: skip


def test_the_allocation_stack_of_a_device_probed_at_boot(mount: Mount) -> None:
    """call_driver_probe() is inlined into really_probe(); a device added at boot is probed
    from device_add(), in an initcall of pid 1 (kernel_init())."""
    alloc = kasan_track(devm_use_after_unbind(mount), "Allocated")
    assert alloc == [
        *ALLOC_HEAD, "__device_attach_driver", "bus_for_each_drv", "__device_attach",
        "device_initial_probe", "bus_probe_device", "device_add", "do_one_initcall",
        "do_initcall_level", "do_initcalls", "kernel_init_freeable", "kernel_init",
        "ret_from_fork", "ret_from_fork_asm",
    ]  # fmt: skip
    text = mount.kmsg_text()
    assert "Allocated by task 1:" in text
    # release_nodes() frees each devres with kfree(); devm_kmalloc_release() frees nothing
    assert kasan_track(text, "Freed") == [
        "kasan_save_stack", "kasan_save_track", "kasan_save_free_info", "__kasan_slab_free",
        "kfree", "release_nodes", "devres_release_all", "device_unbind_cleanup",
        "device_release_driver_internal", "device_driver_detach", "unbind_store",
        "drv_attr_store", "sysfs_kf_write", "kernfs_fop_write_iter", "vfs_write", "ksys_write",
        "__x64_sys_write", "x64_sys_call", "do_syscall_64", "entry_SYSCALL_64_after_hwframe",
    ]  # fmt: skip
    # The object is the devres: its struct devres_node (40 bytes) in front of the driver's
    # struct chardev (184 bytes, its bool gone at 168): kmalloc(sizeof(struct devres) + size)
    # in alloc_dr(), 224 bytes from kmalloc-256, and gone 208 bytes into it.
    start = text.index(next(line for line in text if line.startswith("BUG: KASAN")))
    assert text[start + 1].startswith("Read of size 1 at addr ")
    described = text.index(" which belongs to the cache kmalloc-256 of size 256", start)
    assert text[described + 1] == "The buggy address is located 208 bytes inside of"


def test_the_allocation_stack_of_a_device_probed_by_insmod(mount: Mount) -> None:
    """A module's init registers its driver, which probes the devices already there; the
    init is the module's code (module_platform_driver() expands in the driver's file), and
    the load is finit_module(2)."""
    mount.sh(
        f"echo cdev_devm > {CTL}/delete_module; echo cdev_devm > {CTL}/init_module", check=True
    )
    text = devm_use_after_unbind(mount)
    alloc = kasan_track(text, "Allocated")
    assert alloc == [
        *ALLOC_HEAD, "__driver_attach", "bus_for_each_dev", "driver_attach", "bus_add_driver",
        "driver_register", "cdev_devm_driver_init", "do_one_initcall", "do_init_module",
        "load_module", "init_module_from_file", "idempotent_init_module",
        "__x64_sys_finit_module", "x64_sys_call", "do_syscall_64",
        "entry_SYSCALL_64_after_hwframe",
    ]  # fmt: skip
    start = text.index(next(line for line in text if line.startswith("Allocated by task ")))
    assert any(line.startswith(" cdev_devm_driver_init+") and line.endswith(" [cdev_devm]")
               for line in text[start:])  # fmt: skip
