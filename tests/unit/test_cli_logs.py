"""``nowcastkit logs``: the last lines of a file, read from its end."""

from __future__ import annotations

import io

import pytest

from nowcastkit.cli import logs


@pytest.mark.parametrize(
    ("text", "lines", "expected"),
    [
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),  # a last line not ended yet is a line
        (b"a\nb\n", 5, b"a\nb\n"),
        (b"a\n\n\nb\n", 3, b"\n\nb\n"),
        (b"", 3, b""),
        (b"a\nb\n", 0, b""),
    ],
)
def test_the_last_lines_of_a_small_file(text, lines, expected):
    assert logs.last_lines(io.BytesIO(text), lines) == (expected, len(text))


def test_a_large_file_is_read_from_its_end_a_block_at_a_time():
    text = b"".join(b"line %d\n" % i for i in range(200_000))
    reads = []

    class Counted(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    assert logs.last_lines(Counted(text), 3) == (b"line 199997\nline 199998\nline 199999\n",
                                                 len(text))  # fmt: skip
    assert len(reads) == 1 and len(text) > 20 * reads[0]
    many, _ = logs.last_lines(io.BytesIO(text), 20_000)
    assert many == b"".join(b"line %d\n" % i for i in range(180_000, 200_000))
