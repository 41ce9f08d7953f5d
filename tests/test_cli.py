"""The command line: version, help, and what ``fakesys run`` says when it cannot run the
command (as a shell does, before anything is mounted)."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

import fakesys

from .conftest import fakesys_command


def test_version() -> None:
    out = fakesys_command("--version")
    assert out.returncode == 0
    assert out.stdout == f"fakesys {fakesys.__version__}\n"
    assert importlib.metadata.version("fakesys") == fakesys.__version__


@pytest.mark.parametrize(
    ("subcommand", "description"),
    [
        ("mount", "Mount the tree of a scenario (sys/, dev/, proc/) on MOUNTPOINT"),
        ("run", "Mount a scenario, then run COMMAND in a private mount namespace"),
        ("scenarios", "List the names of the shipped scenarios"),
    ],
)
def test_each_subcommand_says_what_it_does(subcommand: str, description: str) -> None:
    out = fakesys_command(subcommand, "--help")
    assert out.returncode == 0
    paragraphs = out.stdout.split("\n\n")
    assert " ".join(paragraphs[1].split()).startswith(description)


def test_run_of_an_unknown_command_says_so_like_a_shell() -> None:
    out = fakesys_command("run", "--", "nosuchcmd-fakesys")
    assert out.returncode == 127
    assert out.stderr == "fakesys: nosuchcmd-fakesys: command not found\n"


def test_run_of_a_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    out = fakesys_command("run", "--", str(missing))
    assert out.returncode == 127
    assert out.stderr == f"fakesys: {missing}: No such file or directory\n"


def test_run_of_a_file_that_is_not_executable(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    out = fakesys_command("run", "--", str(script))
    assert out.returncode == 126
    assert out.stderr == f"fakesys: {script}: Permission denied\n"
    out = fakesys_command("run", "--", str(tmp_path))
    assert out.returncode == 126
    assert out.stderr == f"fakesys: {tmp_path}: Is a directory\n"


def test_run_of_a_name_found_in_path_but_not_executable(tmp_path: Path) -> None:
    (tmp_path / "tool").write_text("#!/bin/sh\n")
    out = fakesys_command("run", "--", "tool", env=dict(os.environ, PATH=str(tmp_path)))
    assert out.returncode == 126
    assert out.stderr == "fakesys: tool: Permission denied\n"
