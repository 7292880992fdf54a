"""Development secrets on disk: created once, atomically, readable by their owner only."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

from lib.errors import ConfigurationError


def publish_secret_file(path: Path, content: str) -> bool:
    """Create `path` holding `content`, mode 0600 from the first byte and never partial.

    Returns False when the file already exists (another process or thread won the race;
    everyone then uses its content).
    """
    # Unique per call: Streamlit sessions are threads of one process, so a pid is not enough.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(content + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)  # fails if the file exists: link() never overwrites
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def read_secret_file(path: Path, what: str) -> str:
    """The stripped content of a secret file that only its owner can read; anything else
    (not a regular file, readable by others) is refused with how to fix it."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise ConfigurationError(f"{what} {path} is not a regular file")
    if os.name != "nt" and mode & 0o077:
        raise ConfigurationError(
            f"{what} {path} has permissions {stat.S_IMODE(mode):04o}; it must be readable "
            f"by its owner only: chmod 600 {path}")
    return path.read_text(encoding="ascii").strip()
