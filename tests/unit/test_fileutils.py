"""FilePerms: rwx strings to mode bits and back; a bad string is one line (issue 16)."""

from __future__ import annotations

import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowcastkit.errors import NowcastkitError
from nowcastkit.fileutils import FilePerms, FilePermsError


def test_the_shared_library_modes_int_is_0o664_and_chmod_takes_it(tmp_path):
    perms = FilePerms(user="rw", group="rw", other="r")
    path = tmp_path / "forcing.nc"
    path.write_bytes(b"")
    os.chmod(path, int(perms))
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    path.chmod(0o600)
    os.chmod(path, perms)  # __index__: the object itself is a mode
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    assert FilePerms.from_path(path) == perms


def test_letters_in_any_order_and_repeated_are_kept_in_rwx_order():
    perms = FilePerms(user="xwr", group="rr", other="")
    assert (perms.user, perms.group, perms.other) == ("rwx", "r", "")
    assert repr(perms) == "FilePerms(user='rwx', group='r', other='')"
    assert int(perms) == 0o740
    assert int(FilePerms()) == 0
    assert int(FilePerms("r", "r", "")) == 0o440


def test_from_int_reads_the_lower_nine_bits_only():
    assert FilePerms.from_int(0o644) == FilePerms(user="rw", group="r", other="r")
    assert FilePerms.from_int(0o104755) == FilePerms("rwx", "rx", "rx")


@pytest.mark.parametrize(
    ("kwargs", "line"),
    [
        ({"group": "rwz"}, "FilePerms: group: got 'rwz', expected a string of r, w and x (or '')"),
        ({"other": 4}, "FilePerms: other: got 4, expected a string of r, w and x (or '')"),
        ({"user": "u+rw"}, "FilePerms: user: got 'u+rw', expected a string of r, w and x (or '')"),
    ],
)
def test_a_bad_permission_string_is_one_line_naming_it(kwargs, line):
    with pytest.raises(FilePermsError) as caught:
        FilePerms(**kwargs)
    assert str(caught.value) == line
    # the reference design raised ValueError: code that caught it still does
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, NowcastkitError)


def test_it_is_a_frozen_value():
    perms = FilePerms("rw")
    with pytest.raises(AttributeError):
        perms.user = "r"  # type: ignore[misc]
    assert {perms, FilePerms("wr")} == {perms}


@given(st.integers(min_value=0, max_value=0o777))
def test_every_mode_survives_the_round_trip(mode):
    assert int(FilePerms.from_int(mode)) == mode


@given(st.text(alphabet="rwx", max_size=6), st.text(alphabet="rwx", max_size=6))
def test_int_is_the_or_of_each_letters_bit(user, other):
    want = sum({"r": 0o400, "w": 0o200, "x": 0o100}[c] for c in set(user))
    want |= sum({"r": 4, "w": 2, "x": 1}[c] for c in set(other))
    assert int(FilePerms(user=user, other=other)) == want
