"""HLS playlists over the renditions, serving each rendition's single MP4 by byte range.

The media playlist of a rendition names one file: ``EXT-X-MAP`` points at its init section
(``ftyp`` + ``moov``) and every segment is one ``moof`` + ``mdat`` fragment addressed with
``EXT-X-BYTERANGE`` — fragmented-MP4 HLS (protocol version 7), which Safari, iOS, tvOS and
hls.js play natively. The master playlist lists one variant per rendition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .transcode import Rendition

__all__ = ["hls_master", "hls_media_playlist"]


def hls_media_playlist(rendition: Rendition, uri: str) -> str:
    """The VOD media playlist for ``rendition``, whose MP4 is reachable at ``uri``."""
    # HLS: every EXTINF, rounded to the nearest integer, must be <= the target duration
    target = max((round(f.duration_s) for f in rendition.fragments), default=1)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{max(target, 1)}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{uri}",BYTERANGE="{rendition.init_length}@0"',
    ]
    for fragment in rendition.fragments:
        lines += [
            f"#EXTINF:{fragment.duration_s:.3f},",
            f"#EXT-X-BYTERANGE:{fragment.length}@{fragment.offset}",
            uri,
        ]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def hls_master(renditions: Sequence[Rendition], uri_for: Callable[[Rendition], str]) -> str:
    """The master playlist: one ``EXT-X-STREAM-INF`` per rendition, lowest first.

    ``uri_for(rendition)`` gives the URI of that rendition's media playlist (as served from
    :func:`hls_media_playlist`). BANDWIDTH is the peak fragment bitrate, as HLS requires.
    """
    lines = ["#EXTM3U", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for rendition in sorted(renditions, key=lambda r: r.peak_bandwidth):
        attributes = ",".join(
            [
                f"BANDWIDTH={rendition.peak_bandwidth}",
                f"AVERAGE-BANDWIDTH={rendition.average_bandwidth}",
                f"RESOLUTION={rendition.width}x{rendition.height}",
                f"FRAME-RATE={rendition.fps:.3f}",
                f'CODECS="{rendition.codecs}"',
            ]
        )
        lines += [f"#EXT-X-STREAM-INF:{attributes}", uri_for(rendition)]
    return "\n".join(lines) + "\n"
