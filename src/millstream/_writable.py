"""Whether a local directory is writable, or can be created: the check behind ``file://``
stores and SQLite tables, which create their directory on first use."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from millstream.errors import ConfigError

__all__ = ["check_directory"]


def check_directory(path: Path, setting: str, what: str) -> str:
    """Say that ``path`` is a writable directory, or will be created on first use; raise
    ``ConfigError`` naming the fix (``setting`` is the variable to change) otherwise.
    Creates nothing."""
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{path} is not a directory — point {setting} at a directory")
        try:
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError as exc:
            raise ConfigError(f"{path} is not writable ({exc.strerror}) — fix its permissions "
                              f"or point {setting} elsewhere") from exc
        return f"{what} {path} is writable"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"cannot create {path}: {ancestor} is a file, not a directory — "
                          f"point {setting} at a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create {path}: {ancestor} is not writable — fix its "
                          f"permissions or point {setting} elsewhere")
    return f"{what} {path} will be created on first use"
