"""A family's backends by URL scheme: how to open one, and how to check one works.

``open_streams``, ``open_files`` and ``open_tables`` each keep one table from scheme to
``Backend``; ``millstream doctor`` checks a URL through the same table, so a backend is opened
and checked by the same code. ``check`` opens the backend as the application would, makes one
harmless call that needs the server, the credentials and the bucket or database, and returns
what it found (one line); a failure raises the millstream error the application would get,
whose message says what to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["Backend"]

T = TypeVar("T")

#: ``(url, home, options)``: the URL as configured, MILLSTREAM_HOME, options for the client
Opener = Callable[[str, Path, Mapping[str, Any] | None], T]
Checker = Callable[[str, Path, Mapping[str, Any] | None], str]


@dataclass(frozen=True, slots=True)
class Backend(Generic[T]):
    """How to open one backend, and how to check it (see the module docstring)."""

    open: Opener[T]
    check: Checker
