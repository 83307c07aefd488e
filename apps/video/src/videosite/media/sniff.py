"""Decide whether an upload really is a video container: magic bytes first, then PyAV.

The file's name and declared content type are never consulted. The magic bytes choose the
demuxer; PyAV then opens the file with exactly that demuxer, its headers are checked against
the limits, and it must decode a video frame.
"""

from __future__ import annotations

import os

from ._decoding import first_frame
from ._magic import DEMUXERS, HEAD_BYTES, sniff_bytes
from ._open import open_video
from .limits import DEFAULT_LIMITS, MediaLimits

__all__ = ["DEMUXERS", "HEAD_BYTES", "sniff", "sniff_bytes"]


def sniff(
    source: str | os.PathLike[str] | bytes, limits: MediaLimits = DEFAULT_LIMITS
) -> str:
    """The container of a video file or of its first bytes, e.g. ``"mp4"`` or ``"webm"``.

    Given bytes, only the magic bytes are checked. Given a path, the file must also open
    with the demuxer those bytes name, pass ``limits`` on its headers (MediaRejected
    otherwise) and yield a decodable video frame on a bounded decoder (cover art and other
    attached pictures do not count). Raises NotAVideo with the reason otherwise.
    """
    if isinstance(source, bytes):
        return sniff_bytes(source)
    with open_video(source, limits, threads=1) as opened:
        first_frame(opened, limits)
        return opened.headers.container
