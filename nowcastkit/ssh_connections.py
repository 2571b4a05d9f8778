"""Where ssh keeps the connections the manager and the tools share with each host.

    ssh_argv(host, line, control_path(state_folder))

The state folder (beside the store) when its path is short enough for a socket, else
a private folder in the temporary folder; the manager and ``nowcastkit logs`` use the
same one, so the tools ride on the manager's connections.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

__all__ = ["control_path"]

log = logging.getLogger("manager")

#: The longest socket path ssh can make: sun_path less the suffix ssh adds while binding.
_SOCKET_PATH_MAX = 108 - 1 - 17


def control_path(folder: Path) -> str | None:
    """Where ssh keeps the shared connections: *folder*, or a private one in the temporary
    folder when *folder*'s path is too long for a socket; None when neither can be had."""
    if len(str(folder)) + len("/ssh-") + 40 <= _SOCKET_PATH_MAX:
        return str(folder / "ssh-%C")
    private = Path(tempfile.gettempdir()) / f"nowcastkit-{os.getuid()}"
    try:
        private.mkdir(mode=0o700, exist_ok=True)
        info = private.lstat()
    except OSError as err:
        log.warning("ssh connections not shared: %s", err)
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not private.is_dir():
        log.warning("ssh connections not shared: %s is not a private folder", private)
        return None
    return str(private / "%C")
