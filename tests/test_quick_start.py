"""The README followed on a copy of the checkout: ``scripts/run`` serves ``./mountpoint`` while
the installs, git and pytest work beside it, the tour's commands run verbatim and show what
they promise, and every scenario script then works on the tree the tour has played on.

The copy shares this checkout's virtual environment (``.venv`` is a link to it), so
``scripts/run``'s set-up finds everything installed and changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import fakesys
from fakesys._mounts import detach, mounted_fstype

from .conftest import fuse_usable, wait_blocked_in_read, wait_until

pytestmark = pytest.mark.skipif(not fuse_usable(), reason="no usable /dev/fuse on this machine")

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((REPO / "scripts" / "scenarios").glob("0*.sh"))
#: Not part of a checkout, or made by using one (for a copy made without git).
NOT_IN_A_CHECKOUT = shutil.ignore_patterns(
    ".git", ".venv", "mountpoint", "build", "*.egg-info", "__pycache__", ".*_cache"
)
#: A hang is what these tests look for; this only bounds how long one is waited for.
HANG = 300


def copy_of_the_checkout(destination: Path) -> Path:
    """The checkout's files in ``destination``, with a link to its virtual environment."""
    venv = REPO / ".venv"
    stamp = venv / ".installed[test]"
    installed = stamp.read_text().strip() if stamp.exists() else None
    if installed != hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest():
        pytest.skip("the virtual environment is not set up for this checkout: run scripts/test")
    if (REPO / ".git").exists() and shutil.which("git") is not None:
        # What a clone would have, with the changes not committed yet: the files git tracks
        # and those it would add.
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        for name in sorted({os.fsdecode(n) for n in listed.split(b"\0") if n}):
            if os.path.lexists(REPO / name):  # not deleted in the working tree
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, destination / name, follow_symlinks=False)
    else:
        shutil.copytree(REPO, destination, ignore=NOT_IN_A_CHECKOUT, symlinks=True)
    (destination / ".venv").symlink_to(venv)
    return destination


@dataclass
class Served:
    """``scripts/run`` serving a copy of the checkout."""

    checkout: Path
    process: subprocess.Popen[str]
    first_line: str

    @property
    def mountpoint(self) -> Path:
        return self.checkout / "mountpoint"

    def stop(self) -> str:
        """Ctrl-C, as in the terminal that runs it; what it says after that."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        rest, _ = self.process.communicate(timeout=60)
        if mounted_fstype(self.mountpoint) is not None:
            detach(self.mountpoint)
        return rest


def serve(checkout: Path) -> Served:
    process = subprocess.Popen(
        [str(checkout / "scripts" / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], HANG)
    served = Served(checkout, process, process.stdout.readline() if ready else "")
    if not served.first_line.startswith("fakesys: mounted"):
        rest = served.stop()
        pytest.fail(f"scripts/run did not mount: {served.first_line}{rest}")
    return served


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    checkout = copy_of_the_checkout(tmp_path_factory.mktemp("checkout") / "fakesys")
    if shutil.which("git") is not None:
        git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(checkout)]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "copy"], check=True)
    served = serve(checkout)
    yield served
    served.stop()


def test_scripts_run_says_where_it_mounted_and_how_to_stop(served: Served) -> None:
    assert served.first_line == (
        f"fakesys: mounted default.toml on {served.mountpoint}; Ctrl-C or SIGTERM unmounts\n"
    )
    assert mounted_fstype(served.mountpoint) == "fuse.fakesys"


def test_ctrl_c_unmounts_and_says_so(tmp_path: Path) -> None:
    own = serve(copy_of_the_checkout(tmp_path / "fakesys"))
    assert own.stop() == f"fakesys: unmounted {own.mountpoint}\n"
    assert own.process.returncode == 0
    assert mounted_fstype(own.mountpoint) is None


@pytest.mark.parametrize("editable", [False, True], ids=["install", "editable-install"])
def test_pip_installs_the_checkout_while_it_is_served(
    served: Served, tmp_path: Path, editable: bool
) -> None:
    """The package search of setuptools follows symlinks: it must not enter the mount."""
    target = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), *(["-e"] if editable else []),
         str(served.checkout)],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    installed = {p.name for p in target.iterdir()}
    assert f"fakesys-{fakesys.__version__}.dist-info" in installed


def test_pytest_collects_the_checkout_while_it_is_served(served: Served) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "."],
        cwd=served.checkout,
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tests/test_quick_start.py::test_pytest_collects_the_checkout" in out.stdout


def test_git_status_is_clean_while_it_is_served(served: Served) -> None:
    if shutil.which("git") is None:
        pytest.skip("no git on this machine")
    out = subprocess.run(
        ["git", "-C", str(served.checkout), "status", "--porcelain"],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=True,
    )
    assert out.stdout == ""


def test_activate_puts_fakesys_and_pytest_on_path() -> None:
    """The README's way to get the commands: the virtual environment's activate script."""
    out = subprocess.run(
        ["bash", "--norc", "-c", ". .venv/bin/activate && fakesys --version && pytest --version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
        env={key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"fakesys {fakesys.__version__}\npytest ")


# -- the tour --


def tour_commands() -> list[tuple[str, str]]:
    """The command lines of the README's tour (its ``sh`` blocks), in order, each split into
    the command and its comment."""
    readme = (REPO / "README.md").read_text()
    tour = readme.split("## A short tour", 1)[1].split("\n## ", 1)[0]
    lines = [
        line
        for block in re.findall(r"```sh\n(.*?)```", tour, re.DOTALL)
        for line in block.splitlines()
        if line.strip()
    ]
    split = [re.split(r"\s+#\s+", line, maxsplit=1) for line in lines]
    return [(parts[0].strip(), parts[1] if len(parts) > 1 else "") for parts in split]


@dataclass
class Step:
    command: str
    comment: str
    status: int
    output: str


class Shell:
    """One bash that reads command lines as a terminal's shell does, each run to its end
    before the next is given; output and errors in one stream, background jobs' included."""

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile", "-s"],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, LC_ALL="C"),
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.transcript = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def _next_line(self) -> str:
        try:
            line = self._lines.get(timeout=HANG)
        except queue.Empty:
            pytest.fail(f"the shell printed nothing more in {HANG} s:\n{self.transcript}")
        self.transcript += line
        return line

    def _children(self) -> set[int]:
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return {int(child) for child in f.read().split()}

    def run(self, command: str, *, ctrl_c: bool = False) -> tuple[int, str]:
        """Run ``command`` with stdin from /dev/null (so that nothing it starts reads the
        next lines); with ``ctrl_c``, send it SIGINT once it waits in a read, as Ctrl-C
        would. Returns its status and what was printed meanwhile."""
        assert self.process.stdin is not None
        marker = f"@@{uuid.uuid4().hex}"
        before = self._children()
        self.process.stdin.write(f'{{ {command}\n}} </dev/null\necho "{marker} $?"\n')
        self.process.stdin.flush()
        if ctrl_c:
            assert wait_until(lambda: bool(self._children() - before), HANG)
            (reader,) = self._children() - before
            wait_blocked_in_read(reader, HANG)
            os.kill(reader, signal.SIGINT)
        output = ""
        while marker not in (line := self._next_line()):
            output += line
        printed, _, status = line.partition(marker)  # output without a final newline
        return int(status), output + printed

    def job_reads(self, path: str) -> bool:
        """Until a background job of the shell waits in a read of ``path``."""
        for child in self._children():
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if path.encode() in f.read().split(b"\0"):
                    wait_blocked_in_read(child, HANG)
                    return True
        return False

    def wait_for_output(self, text: str) -> bool:
        """Until ``text`` has been printed (by a background job, say)."""
        while text not in self.transcript:
            self._next_line()
        return True

    def close(self) -> None:
        """End of input: bash exits (a job still running is killed)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=60)
        finally:
            self.process.kill()
            self.process.wait()
            self._reader.join(timeout=60)
            self.process.stdout.close()


#: How the tour's comments say that a command fails, and the status bash gives it then.
FAILURES = {"write error:": 1, "Permission denied": 1, "No such device": 1, "Ctrl-C ends it": 130}
DEVCD = "/devices/virtual/devcoredump"
CLASS_DEVCD = "sys/class/devcoredump"


def play_the_tour(shell: Shell, mountpoint: Path) -> list[Step]:
    # What a reader sees happen before typing the next line; the test waits for it instead.
    coredump = "echo 1 > sys/kernel/debug/fakesys/devices/0000:00:02.0/hang"
    wait_before = {
        # the monitor started in the background has opened the stream
        (coredump, 1): lambda: wait_until(
            lambda: shell.job_reads("sys/kernel/debug/fakesys/uevents"), HANG
        ),
        # the GPU's recovery work takes the dump, asynchronously
        (f"ls -l {CLASS_DEVCD}/", 1): lambda: wait_until(
            (mountpoint / CLASS_DEVCD / "devcd1").exists, HANG
        ),
        # the first dump is freed asynchronously, and a device that has a dump gets no other
        (coredump, 2): lambda: wait_until(
            lambda: not (mountpoint / CLASS_DEVCD / "devcd1").exists(), HANG
        ),
        ("echo 3600 > sys/kernel/debug/fakesys/advance_clock", 1): lambda: wait_until(
            (mountpoint / CLASS_DEVCD / "devcd2").exists, HANG
        ),
        ("kill %1", 1): lambda: shell.wait_for_output(f"remove   {DEVCD}/devcd2 (devcoredump)"),
    }
    steps: list[Step] = []
    for command, comment in tour_commands():
        nth = 1 + sum(step.command == command for step in steps)
        if (command, nth) in wait_before:
            assert wait_before[command, nth](), f"{command}: what comes before never happened"
        status, output = shell.run(command, ctrl_c="Ctrl-C ends it" in comment)
        steps.append(Step(command, comment, status, output))
    return steps


def run_script(script: Path, mountpoint: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script)],
        capture_output=True,
        text=True,
        timeout=HANG,
        env=dict(os.environ, FAKESYS_MOUNT=str(mountpoint)),
        check=False,
    )


def test_the_tour_then_every_scenario_script_on_the_same_tree(served: Served) -> None:
    shell = Shell(served.checkout)
    try:
        steps = play_the_tour(shell, served.mountpoint)
    finally:
        shell.close()

    def outputs(command: str) -> list[str]:
        return [step.output for step in steps if step.command == command]

    for step in steps:
        said = [failure for failure in FAILURES if failure in step.comment]
        assert step.status == (FAILURES[said[0]] if said else 0), f"{step}"
        if said and said[0] != "Ctrl-C ends it":  # the error, as the comment gives it
            error = step.comment[step.comment.index(said[0]) :].split(",")[0]
            assert error in step.output, f"{step}"
    assert outputs("ls sys/bus/platform/drivers/foo") == ["bind\nfoo.0\nmodule\nuevent\nunbind\n"]
    assert outputs("readlink sys/bus/platform/devices/foo.0") == [
        "../../../devices/platform/foo.0\n"
    ]
    assert outputs("cat sys/devices/platform/foo.0/uevent") == [
        "DRIVER=foo\nMODALIAS=platform:foo\n"
    ]
    assert "driver" not in outputs("ls sys/devices/platform/foo.0")[0].split()
    assert (
        "Kernel driver in use: fakegpu"
        in outputs("lspci -k -A linux-sysfs -O sysfs.path=sys/bus/pci")[0]
    )
    assert outputs("head -c 5 dev/devm0") == ["hello"]
    assert outputs("cat proc/sys/kernel/tainted") == ["0\n", "32\n"]
    (kasan,) = [step for step in steps if step.command.endswith("grep KASAN")]
    assert kasan.comment in kasan.output
    for step in steps:
        if "scripts/scenarios/" in step.command:
            assert step.output.endswith("\nall expectations met\n"), f"{step}"
    assert f"devcd1 -> ../..{DEVCD}/devcd1" in outputs(f"ls -l {CLASS_DEVCD}/")[0]
    assert outputs(f"head -3 {CLASS_DEVCD}/devcd1/data")[0].splitlines()[1] == "module: fakegpu"
    events = re.findall(rf"^KERNEL\[[0-9.]+\] (\w+) +{DEVCD}/(devcd\d+) ", shell.transcript, re.M)
    assert events == [
        ("add", "devcd1"),
        ("remove", "devcd1"),
        ("add", "devcd2"),
        ("remove", "devcd2"),
    ]

    # Now every script on the tree the tour left, in one order and the other.
    for script in [*reversed(SCRIPTS), *SCRIPTS]:
        out = run_script(script, served.mountpoint)
        assert out.returncode == 0, f"{script.name}: {out.stdout}{out.stderr}"
        assert out.stdout.endswith("\nall expectations met\n"), f"{script.name}: {out.stdout}"
