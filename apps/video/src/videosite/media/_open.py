"""The one way into a video: its headers checked against the limits before a frame is decoded.

:func:`open_video` reads the magic bytes, opens the container with every decoder barred
(FFmpeg's stream probing, run by ``av.open``, otherwise decodes frames to complete what
the headers leave out: a 798 KB MOV holding one 16000 x 16000 PNG frame cost 740 MB in
``av.open`` alone), and checks what the container and stream headers declare:

- the number of streams, and the video codec against :data:`VIDEO_CODECS`;
- width, height, pixels per frame and raw frame size;
- frame rate, duration and frame count;
- how far apart the video's and the first audio stream's first timestamps are (no more than
  the video's duration).

Only then does it hand out the container, with the video decoder bounded. FFmpeg's
``max_pixels`` refuses a larger picture before its buffer is allocated, also when a
stream changes size midway. The decoder runs at most ``decoder_threads`` threads.

When the headers do not give the frame size (FLV's Sorenson video, for one), the first
frame alone is decoded to learn it, on a decoder bounded the same way and with one thread.

Timestamps need not start at zero (MPEG-TS clocks, MKV and MOV start offsets and edit
lists): the duration is the video stream's end minus its start, the end being read from the
last packets' timestamps (demuxed, not decoded); when the file is cut short there, a header
that declares more (an index) wins, so truncation stays visible. :func:`check_frame` applies
the same limits to a decoded frame, for stages that must not trust the headers.

Here: ``open_video``; the headers are read and checked in ``_headers`` (against the limits,
``_checks``), the container opened barred in ``_container``, frames decoded in ``_decoding``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._container import bound, main_video_stream, open_barred
from ._decoding import OpenVideo
from ._headers import read_headers
from ._magic import HEAD_BYTES, sniff_bytes
from .errors import NotAVideo
from .limits import MediaLimits

__all__ = ["open_video"]


def open_video(path: str | os.PathLike[str], limits: MediaLimits, *, threads: int | None = None
               ) -> OpenVideo:
    """The video at ``path``, open and checked against ``limits``; use it with ``with``.

    The decoder runs ``threads`` threads (``limits.decoder_threads`` if None; one is enough
    for a caller that decodes a frame or two, and holds a 4K frame less per thread).

    Raises NotAVideo if it is not a video container (or has no video stream), and
    MediaRejected naming the value and the limit if its headers are over ``limits``.
    """
    path = Path(path)
    name = _sniff_file(path)
    with open_barred(path, name) as scan:
        headers = read_headers(name, path, scan, limits)
    container = open_barred(path, name)
    try:
        video = main_video_stream(container, name)
        bound(video, limits, threads or limits.decoder_threads)
    except BaseException:
        container.close()
        raise
    return OpenVideo(container, video, headers, path.stat().st_size, limits.max_pixels)


def _sniff_file(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    if not head:
        raise NotAVideo("an empty file, not a video")
    return sniff_bytes(head)
