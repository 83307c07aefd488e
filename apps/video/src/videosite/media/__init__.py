"""The media layer of the video site: pure functions over PyAV and Pillow.

``sniff`` (is it a video container?), ``probe`` (what is it? refuse bombs), ``thumbnails``
and ``poster`` (JPEG stills), ``transcode`` (the H.264 + AAC rendition ladder) and
``hls_master`` / ``hls_media_playlist`` (adaptive streaming over the renditions).
``samples.make_clip`` generates test clips. Nothing here knows of millstream.
"""

from __future__ import annotations

from .errors import MediaError, MediaRejected, NotAVideo, ProcessingError
from .hls import hls_master, hls_media_playlist
from .limits import DEFAULT_LIMITS, MediaLimits
from .mp4 import Fragment
from .probe import ProbeResult, probe
from .sniff import sniff
from .thumbs import poster, thumbnails, thumbnails_and_poster
from .transcode import DEFAULT_LADDER, Rendition, Rung, plan_ladder, transcode

__all__ = [
    "DEFAULT_LADDER",
    "DEFAULT_LIMITS",
    "Fragment",
    "MediaError",
    "MediaLimits",
    "MediaRejected",
    "NotAVideo",
    "ProbeResult",
    "ProcessingError",
    "Rendition",
    "Rung",
    "hls_master",
    "hls_media_playlist",
    "plan_ladder",
    "poster",
    "probe",
    "sniff",
    "thumbnails",
    "thumbnails_and_poster",
    "transcode",
]
