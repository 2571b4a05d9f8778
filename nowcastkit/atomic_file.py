"""Replace a file so that a reader sees the old one or the whole new one, never half.

    atomic_file.replace(path, [b"whole ", b"content"])    # chunks: a download streams them

The chunks go to a temporary file beside *path*, which is fsynced, renamed over *path*,
and the folder fsynced, so the rename survives a crash too.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["replace"]

_serial = itertools.count()


def replace(path: Path, chunks: Iterable[bytes]) -> None:
    """Replace *path* with *chunks* atomically; raises OSError when it cannot."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{next(_serial)}.tmp")
    # 0o666 less the umask, as open() would give the file itself
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
