"""The platform's configuration: which streams, files and tables URLs to use.

Resolved, highest first, from: arguments, ``MILLSTREAM_STREAMS`` / ``MILLSTREAM_FILES`` /
``MILLSTREAM_TABLES`` environment variables, a ``millstream.toml`` file (``[platform]`` table,
found in the working directory or named by ``MILLSTREAM_CONFIG``), and the embedded defaults
under ``MILLSTREAM_HOME`` (``./.millstream``). The environment is read here, at the edge,
and nowhere else.

A public module: ``load_config`` and ``PlatformConfig`` are also at the top level
(``millstream.load_config``); ``millstream config show`` prints what they resolve.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from millstream.errors import ConfigError

__all__ = ["KEYS", "PlatformConfig", "load_config"]

KEYS = ("streams", "files", "tables")
CONFIG_FILE = "millstream.toml"


@dataclass(frozen=True, slots=True)
class PlatformConfig:
    """Where the platform keeps its streams, files and tables, and where each value came from."""

    home: Path
    streams: str
    files: str
    tables: str
    sources: Mapping[str, str] = field(default_factory=dict)


def _defaults(home: Path) -> dict[str, str]:
    return {
        "streams": "local:",
        "files": (home / "files").absolute().as_uri(),
        "tables": "sqlite:///" + str((home / "tables.db").absolute()).lstrip("/"),
    }


def load_config(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None, **overrides: str | None
) -> PlatformConfig:
    """Resolve the configuration from overrides, environment, file and defaults."""
    env = os.environ if environ is None else environ
    here = cwd or Path.cwd()
    home = Path(env.get("MILLSTREAM_HOME") or here / ".millstream").expanduser().absolute()
    values = _defaults(home)
    sources = dict.fromkeys(KEYS, "default")
    path_text = env.get("MILLSTREAM_CONFIG")
    path = Path(path_text) if path_text else here / CONFIG_FILE
    if path_text and not path.is_file():
        raise ConfigError(f"MILLSTREAM_CONFIG names {path}, which is not a file")
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        table = data.get("platform", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [platform] must be a table")
        unknown = set(table) - set(KEYS)
        if unknown:
            raise ConfigError(
                f"{path}: unknown key(s) {', '.join(sorted(unknown))} in [platform]; "
                f"known: {', '.join(KEYS)}"
            )
        for key, value in table.items():
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{path}: platform.{key} must be a non-empty URL string")
            values[key] = value
            sources[key] = str(path)
    for key in KEYS:
        name = f"MILLSTREAM_{key.upper()}"
        if env.get(name):
            values[key] = env[name]
            sources[key] = f"${name}"
        if overrides.get(key):
            values[key] = str(overrides[key])
            sources[key] = "argument"
    return PlatformConfig(home=home, sources=sources, **values)
