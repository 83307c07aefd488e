"""The video site's settings, read from the environment when a stage needs them.

``VIDEOSITE_MAX_WIDTH``, ``_MAX_HEIGHT``, ``_MAX_PIXELS``, ``_MAX_FRAME_BYTES``,
``_MAX_DURATION_S``, ``_MAX_FRAMES``, ``_MAX_FPS`` and ``_MAX_STREAMS`` lower (or raise) the
media limits that refuse media bombs, and ``VIDEOSITE_DECODER_THREADS`` the threads a
decoder may use;
``VIDEOSITE_ANALYTICS_DB`` names the analytics database: a SQLite file (a path, or
``sqlite:///absolute/path.db``; default ``$MILLSTREAM_HOME/analytics.db``) or, at scale, a
PostgreSQL database (``postgresql://user@host:port/database``; needs psycopg, ``pip install
'millstream[postgres]'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from millstream import load_config

from .media import DEFAULT_LIMITS, MediaLimits

__all__ = ["analytics_db_url", "media_limits"]

_LIMIT_VARS = {f.name: f"VIDEOSITE_{f.name.upper()}" for f in fields(MediaLimits)}


def media_limits(environ: Mapping[str, str] | None = None) -> MediaLimits:
    """The media limits: the defaults, each overridden by its ``VIDEOSITE_*`` variable."""
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for name, var in _LIMIT_VARS.items():
        raw = env.get(var)
        if raw:
            kind = type(getattr(DEFAULT_LIMITS, name))
            try:
                changes[name] = kind(raw)
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not a {kind.__name__}") from None
    return replace(DEFAULT_LIMITS, **changes)


def analytics_db_url(environ: Mapping[str, str] | None = None) -> str:
    """Where the analytics tables live: a ``postgresql://`` URL as given, else the SQLite
    file as a ``sqlite:///`` URL with an absolute path."""
    env = os.environ if environ is None else environ
    explicit = env.get("VIDEOSITE_ANALYTICS_DB")
    if explicit and "://" in explicit:
        return explicit
    path = Path(explicit) if explicit else load_config(environ=env).home / "analytics.db"
    return f"sqlite:///{path.resolve().as_posix().lstrip('/')}"
