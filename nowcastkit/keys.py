"""CURVE key pairs on disk: made, read, allowed and revoked.

    public, secret = generate(Path("keys"), "host1")   # keys/host1.key, keys/host1.key_secret
    allow(Path("keys/allowed"), public)                  # the broker lets it in
    allowed_keys(Path("keys/allowed"))                   # {b"<z85 public key>": "host1"}
    revoke(Path("keys/allowed"), "host1")

The files are ZeroMQ's certificate format (``public-key = "..."`` in a ``curve``
section), so czmq's and pyzmq's tools read them too. The secret file is written at
mode 0600 from the start, and both files atomically: a crash leaves the old file or
none, never half a key. The reader is this module's own, so a worker does not load
``zmq.auth`` (and asyncio) to find its key.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from nowcastkit.errors import NowcastkitError

__all__ = [
    "KeyFileError",
    "allow",
    "allowed_keys",
    "fingerprint",
    "generate",
    "read_key_file",
    "revoke",
]

_PUBLIC = ".key"
_SECRET = ".key_secret"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
_FIELD = re.compile(rb'^\s*(public-key|secret-key)\s*=\s*"?([^"\s]{40})"?\s*$', re.MULTILINE)
_TEMPLATE = """\
#   ZeroMQ CURVE {kind} certificate, written by nowcastkit keys generate
metadata
    name = "{name}"
curve
    public-key = "{public}"
"""


class KeyFileError(NowcastkitError):
    """A key file that cannot be read, written or found; one line naming the file."""

    exit_status = 2


def fingerprint(public_key: bytes) -> str:
    """A short name for a z85 public key, safe to log: 16 hex digits of its SHA-256."""
    import hashlib  # here: every worker imports this module, and hashlib adds ~3 ms to its start

    return hashlib.sha256(public_key).hexdigest()[:16]


def generate(folder: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` and ``NAME.key_secret`` (mode 0600) in *folder*; return their paths."""
    import zmq

    if not _NAME.fullmatch(name):
        raise KeyFileError(f"{name!r}: expected a key name of letters, digits, '_', '.', '@', '-'")
    public_path, secret_path = folder / f"{name}{_PUBLIC}", folder / f"{name}{_SECRET}"
    for path in (public_path, secret_path):
        if path.exists() and not force:
            raise KeyFileError(f"{path}: exists; revoke and remove it first, or use --force")
    public, secret = zmq.curve_keypair()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_text = _TEMPLATE.format(kind="secret", name=name, public=public.decode())
    _write(secret_path, f'{secret_text}    secret-key = "{secret.decode()}"\n', 0o600)
    _write(public_path, _TEMPLATE.format(kind="public", name=name, public=public.decode()), 0o644)
    return public_path, secret_path


def read_key_file(path: Path) -> tuple[bytes, bytes | None]:
    """The z85 public key in *path*, and its secret key when it is a secret file."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise KeyFileError(f"{path}: cannot read key file: {err.strerror}") from None
    fields = dict(_FIELD.findall(data))
    if b"public-key" not in fields:
        raise KeyFileError(f"{path}: no public-key of 40 characters in it: not a CURVE key file")
    return fields[b"public-key"], fields.get(b"secret-key")


def allowed_keys(folder: Path) -> dict[bytes, str]:
    """Every ``NAME.key`` in the allow-list *folder*: public key -> NAME."""
    try:
        paths = sorted(folder.glob(f"*{_PUBLIC}"))
    except OSError as err:
        raise KeyFileError(f"{folder}: cannot read allow-list folder: {err.strerror}") from None
    if not folder.is_dir():
        raise KeyFileError(f"{folder}: allow-list folder does not exist")
    return {read_key_file(path)[0]: path.name.removesuffix(_PUBLIC) for path in paths}


def allow(folder: Path, public_file: Path) -> Path:
    """Copy the public key *public_file* (``NAME.key``) into the allow-list *folder*."""
    public, secret = read_key_file(public_file)
    if secret is not None:
        raise KeyFileError(f"{public_file}: holds a secret key; allow its {_PUBLIC} file instead")
    name = public_file.name.removesuffix(_SECRET).removesuffix(_PUBLIC)
    for other, other_name in allowed_keys(folder).items() if folder.is_dir() else ():
        if other == public and other_name != name:
            raise KeyFileError(f"{public_file}: the same key is allowed already as {other_name!r}")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"{name}{_PUBLIC}"
    _write(target, public_file.read_text(), 0o644)
    return target


def revoke(folder: Path, name: str) -> Path:
    """Remove ``NAME.key`` from the allow-list *folder*; return the path removed."""
    target = folder / f"{name.removesuffix(_PUBLIC)}{_PUBLIC}"
    try:
        target.unlink()
    except FileNotFoundError:
        raise KeyFileError(f"{target}: no such allowed key") from None
    return target


def _write(path: Path, text: str, mode: int) -> None:
    """Write *text* to *path* atomically, the file at *mode* from its creation."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise KeyFileError(f"{path}: cannot write key file: {err.strerror}") from None
