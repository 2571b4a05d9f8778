"""Functions and constants shared by the system's workers."""
import os

from nemo_nowcast.fileutils import FilePerms

FILEPERMS = FilePerms(user="rw", group="rw", other="r")
DIRPERMS = FilePerms(user="rwx", group="rwx", other="rx")


def mkdir(path, logger, mode=DIRPERMS):
    """Make directory path with mode permissions, if it does not exist."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, int(mode))
    logger.debug(f"made directory {path}")
