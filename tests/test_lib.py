"""The kernel's parsing rules, checked against their definitions with generated inputs."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakesys.kernel.lib import kstrtobool, kstrtoull, simple_strtol, sysfs_streq
from fakesys.kernfs import ErrnoError

names = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)


@given(names, names)
def test_sysfs_streq_ignores_one_trailing_newline_on_either_side(a: str, b: str) -> None:
    assert sysfs_streq(a, b) == (a == b)
    assert sysfs_streq(a + "\n", b) == (a == b)
    assert sysfs_streq(a, b + "\n") == (a == b)
    assert sysfs_streq(a + "\n", b + "\n") == (a == b)
    assert not sysfs_streq(a + "\n\n", a)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_kstrtoull_reads_every_base_0_spelling(value: int) -> None:
    assert kstrtoull(str(value)) == value
    assert kstrtoull(f"{value}\n") == value
    assert kstrtoull(hex(value)) == value
    assert kstrtoull(f"+{value}") == value
    if value:
        assert kstrtoull(f"0{value:o}") == value


@pytest.mark.parametrize("text", ["", " 1", "1 ", "1\n\n", "-1", "0x", "12abc", "08"])
def test_kstrtoull_rejects_anything_else(text: str) -> None:
    with pytest.raises(ErrnoError) as excinfo:
        kstrtoull(text)
    assert excinfo.value.errno == errno.EINVAL


def test_kstrtoull_overflow_is_erange() -> None:
    with pytest.raises(ErrnoError) as excinfo:
        kstrtoull(str(2**64))
    assert excinfo.value.errno == errno.ERANGE


def test_kstrtobool_and_simple_strtol() -> None:
    assert [kstrtobool(s) for s in ("1", "y", "Yes", "on", "0", "n", "off")] == [
        True, True, True, True, False, False, False,
    ]  # fmt: skip
    with pytest.raises(ErrnoError):
        kstrtobool("maybe")
    assert simple_strtol("1abc") == 1
    assert simple_strtol("abc") == 0
    assert simple_strtol("-12\n") == -12
    # lib/vsprintf.c: only "-" is a sign, and nothing skips blanks; digits wrap at 64 bits
    assert simple_strtol("+1") == 0
    assert simple_strtol(" 1") == 0
    assert simple_strtol(str(2**64 + 1)) == 1
    assert simple_strtol("ff", 16) == simple_strtol("0xff", 16) == 255
