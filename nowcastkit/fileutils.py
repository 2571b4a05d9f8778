"""POSIX permission bits written as ``rwx`` strings, for the files a worker leaves behind.

    import os
    from nowcastkit.fileutils import FilePerms

    FILEPERMS = FilePerms(user="rw", group="rw", other="r")
    os.chmod(path, int(FILEPERMS))      # 0o664; os.chmod(path, FILEPERMS) works too

The reference design's ``fileutils.FilePerms``, so a system's shared module that builds one
at import time moves over by its import line alone.
"""

from __future__ import annotations

import os
import stat

import attrs

from nowcastkit.errors import NowcastkitError

__all__ = ["FilePerms", "FilePermsError"]

_BITS = {"r": 4, "w": 2, "x": 1}


class FilePermsError(NowcastkitError, ValueError):
    """A permission string with something other than r, w and x in it.

    A ValueError too, as the reference design raised, so code that caught that still does.
    """


def _normalize(value: object, who: str) -> str:
    """``value`` as its distinct letters in rwx order: 'xrw' -> 'rwx', 'rr' -> 'r'."""
    if not isinstance(value, str) or set(value) - set(_BITS):
        raise FilePermsError(
            f"FilePerms: {who}: got {value!r}, expected a string of r, w and x (or '')"
        )
    return "".join(letter for letter in _BITS if letter in value)


def _bits(letters: str) -> int:
    return sum(_BITS[letter] for letter in letters)


@attrs.frozen(init=False)
class FilePerms:
    """The lower nine mode bits as three ``rwx`` strings; ``int()`` gives the mode.

    Letters may come in any order and repeat; they are kept in rwx order.
    """

    user: str
    group: str
    other: str

    def __init__(self, user: str = "", group: str = "", other: str = "") -> None:
        self.__attrs_init__(
            _normalize(user, "user"), _normalize(group, "group"), _normalize(other, "other")
        )

    @classmethod
    def from_int(cls, mode: int) -> FilePerms:
        """The permissions in ``mode``'s lower nine bits (``0o644`` -> rw, r, r)."""
        letters = [
            "".join(letter for letter, bit in _BITS.items() if mode >> shift & bit)
            for shift in (6, 3, 0)
        ]
        return cls(*letters)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> FilePerms:
        """The permissions of the file or folder at ``path``."""
        return cls.from_int(stat.S_IMODE(os.stat(path).st_mode))

    def __int__(self) -> int:
        return _bits(self.user) << 6 | _bits(self.group) << 3 | _bits(self.other)

    # os.chmod, oct() and format() take any object with __index__.
    __index__ = __int__
