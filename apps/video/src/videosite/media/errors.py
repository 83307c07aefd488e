"""Every error the media layer raises, in one tree.

Each also subclasses the builtin it resembles::

    MediaError                       root; ``retriable`` says whether trying again may help
    ├── NotAVideo (ValueError)       the bytes are not a video container we accept
    ├── MediaRejected (ValueError)   a real video, but over a limit (a "media bomb")
    └── ProcessingError (RuntimeError)  FFmpeg failed on a file that passed the checks

PyAV's own exceptions are translated at the module boundary (``raise ... from exc``).
"""

from __future__ import annotations

__all__ = ["MediaError", "MediaRejected", "NotAVideo", "ProcessingError"]


class MediaError(Exception):
    """Raised for every failure the media layer reports; the root of the tree."""

    retriable: bool = False


class NotAVideo(MediaError, ValueError):
    """Raised when a file is not a video container (an image, audio, text, random bytes)."""


class MediaRejected(MediaError, ValueError):
    """Raised when a video exceeds a limit; ``what``, ``value`` and ``limit`` say which."""

    def __init__(
        self, what: str, value: float | None, limit: float | None, detail: str | None = None
    ) -> None:
        self.what = what
        self.value = value
        self.limit = limit
        super().__init__(detail or f"{what} {_number(value)} exceeds the limit of {_number(limit)}")


def _number(value: float | None) -> str:
    """``value`` in full: 25000000 (not 2.5e+07), 1.5, 10800."""
    if value is None:
        return "unknown"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


class ProcessingError(MediaError, RuntimeError):
    """Raised when decoding or encoding fails on a file that passed sniff and probe."""
