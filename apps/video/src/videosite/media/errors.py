"""Every error the media layer raises, in one tree.

Each also subclasses the builtin it resembles::

    MediaError                       root; ``retriable`` says whether trying again may help
    ├── NotAVideo (ValueError)       the bytes are not a video container we accept
    ├── MediaRejected (ValueError)   a real video, but over a limit (a "media bomb")
    └── ProcessingError (RuntimeError)  FFmpeg failed on a file that passed the checks
        └── MediaUnavailable         reading failed for a reason outside the file's bytes
                                     (memory, I/O, permissions, a missing file, a timeout):
                                     ``retriable``

PyAV's own exceptions are translated at the module boundary (``raise ... from exc``);
:func:`from_av` decides which say something about the file's bytes.
"""

from __future__ import annotations

import av

__all__ = ["CONTENT_ERRORS", "MediaError", "MediaRejected", "MediaUnavailable", "NotAVideo",
           "ProcessingError", "from_av"]

#: PyAV's errors that describe the bytes read (malformed data, an end where more was due, no
#: demuxer or decoder for what they hold, a feature FFmpeg does not implement); every other
#: FFmpegError (ENOMEM, EIO, EACCES, ENOENT, ETIMEDOUT, an FFmpeg bug, ...) is the
#: environment's, and says nothing about the file
CONTENT_ERRORS: tuple[type[av.FFmpegError], ...] = (
    av.error.InvalidDataError, av.error.EOFError, av.error.DemuxerNotFoundError,
    av.error.DecoderNotFoundError, av.error.PatchWelcomeError,
)


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


class MediaUnavailable(ProcessingError):
    """Raised when a file could not be read for a reason that says nothing about its bytes
    (out of memory, an I/O error, no permission, the file gone, a timeout): try again."""

    retriable = True


def from_av(exc: av.FFmpegError, what: str) -> MediaError:
    """The media error for PyAV's ``exc``: NotAVideo (``what`` and the error's class) when
    it is about the bytes (``CONTENT_ERRORS``), else MediaUnavailable, retriable."""
    if isinstance(exc, CONTENT_ERRORS):
        return NotAVideo(f"{what} ({exc.__class__.__name__})")
    return MediaUnavailable(f"reading the video failed for a reason outside the file, to be "
                            f"retried: {exc.__class__.__name__}: {exc}")
