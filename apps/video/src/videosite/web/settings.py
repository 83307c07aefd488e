"""The web server's settings: a frozen dataclass, read from the environment by ``from_env``.

``VIDEOSITE_API_TOKEN`` (writes need ``Authorization: Bearer <token>``; unset: writes are
refused), ``VIDEOSITE_MAX_UPLOAD_BYTES`` (default 1 GiB), ``VIDEOSITE_UPLOAD_IDLE_TIMEOUT_S``
(longest wait for the next piece of an upload, default 30), ``VIDEOSITE_UPLOAD_TIMEOUT_S``
(longest whole upload, default 3600), ``VIDEOSITE_MAX_FIELD_BYTES`` (the largest text part
of an upload's form, and the largest header line of any part, default 4096) and
``VIDEOSITE_MAX_FORM_BYTES`` (all of an upload's body but the file's bytes: part headers,
the title, boundaries, preamble and epilogue; default 65536), ``VIDEOSITE_RECORD_TIMEOUT_S``
(longest wait for the streams to store an accepted upload's record before answering 503,
default 30), ``VIDEOSITE_OPS_PUBLIC`` (``true``: the ops page is open to anyone; by
default it needs the API token), and the throttle on view events per client address
(``POST /api/views``): ``VIDEOSITE_VIEW_BURST`` events at once (default 20), then
``VIDEOSITE_VIEW_RATE`` per second (default 1; a player sends about one every 10 s), and
``VIDEOSITE_CONSOLE_URL``: where the ops page links to the millstream console (default
``http://127.0.0.1:8765/``, where ``millstream console`` serves it).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

__all__ = ["WebSettings"]

_VARS = {
    "token": "VIDEOSITE_API_TOKEN",
    "max_upload_bytes": "VIDEOSITE_MAX_UPLOAD_BYTES",
    "idle_timeout_s": "VIDEOSITE_UPLOAD_IDLE_TIMEOUT_S",
    "upload_timeout_s": "VIDEOSITE_UPLOAD_TIMEOUT_S",
    "max_field_bytes": "VIDEOSITE_MAX_FIELD_BYTES",
    "max_form_bytes": "VIDEOSITE_MAX_FORM_BYTES",
    "record_timeout_s": "VIDEOSITE_RECORD_TIMEOUT_S",
    "ops_public": "VIDEOSITE_OPS_PUBLIC",
    "view_rate": "VIDEOSITE_VIEW_RATE",
    "view_burst": "VIDEOSITE_VIEW_BURST",
    "console_url": "VIDEOSITE_CONSOLE_URL",
}
_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True,
             "0": False, "false": False, "no": False, "off": False}


def _boolean(raw: str) -> bool:
    try:
        return _BOOLEANS[raw.strip().lower()]
    except KeyError:
        raise ValueError(raw) from None


@dataclass(frozen=True, slots=True)
class WebSettings:
    """How the web server accepts uploads."""

    token: str | None = None
    max_upload_bytes: int = 1 << 30
    idle_timeout_s: float = 30.0
    upload_timeout_s: float = 3600.0
    max_field_bytes: int = 4096
    max_form_bytes: int = 64 * 1024
    record_timeout_s: float = 30.0
    ops_public: bool = False
    view_rate: float = 1.0
    view_burst: int = 20
    console_url: str = "http://127.0.0.1:8765/"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any
                 ) -> WebSettings:
        """The defaults, each overridden by its ``VIDEOSITE_*`` variable, then by
        ``overrides`` (keyword arguments that are not None)."""
        return from_env(cls, _VARS, environ, overrides, text={"token", "console_url"})


_S = TypeVar("_S")


def from_env(cls: type[_S], names: Mapping[str, str], environ: Mapping[str, str] | None,
             overrides: Mapping[str, Any], *, text: Collection[str] = ()) -> _S:
    """``cls()``'s defaults, each overridden by its environment variable (``names``: field →
    variable; fields in ``text`` are strings, the others take their default's type), then by
    ``overrides`` that are not None. A value of the wrong type is refused naming it."""
    env = os.environ if environ is None else environ
    changes: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        raw = env.get(names[f.name])
        if raw:
            kind: type = str if f.name in text else type(getattr(cls(), f.name))
            try:
                changes[f.name] = _boolean(raw) if kind is bool else kind(raw)
            except ValueError:
                what = ("true or false" if kind is bool
                        else f"a{'n' if kind is int else ''} {kind.__name__}")
                raise ValueError(f"{names[f.name]}={raw!r} is not {what}") from None
    changes.update({k: v for k, v in overrides.items() if v is not None})
    return replace(cls(), **changes)  # type: ignore[type-var]
