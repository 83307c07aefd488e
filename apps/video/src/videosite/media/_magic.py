"""The magic bytes of video containers: which container a file's first bytes announce (and
the FFmpeg demuxer that reads it), and the images and audio files refused by name."""

from __future__ import annotations

from .errors import NotAVideo

__all__ = ["DEMUXERS", "HEAD_BYTES", "sniff_bytes"]

HEAD_BYTES = 1024
"""How many leading bytes :func:`sniff_bytes` wants to see (it copes with fewer)."""

# container name (what sniff returns) -> the FFmpeg demuxer that reads it
DEMUXERS: dict[str, str] = {
    "mp4": "mov",
    "mov": "mov",
    "webm": "matroska",
    "matroska": "matroska",
    "avi": "avi",
    "mpegts": "mpegts",
    "flv": "flv",
    "ogg": "ogg",
    "mpeg-ps": "mpeg",
    "asf": "asf",
}

# ISO base media brands that are still images, not videos (HEIF/HEIC, AVIF)
_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P "}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


def _image_kind(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return head[8:12].decode("ascii").upper()
    return None


def _is_mpegts(head: bytes, packet: int, lead: int) -> bool:
    """0x47 sync bytes at every packet boundary we can see (at least two of them)."""
    positions = range(lead, len(head), packet)
    return len(positions) >= 2 and all(head[i] == 0x47 for i in positions)


def sniff_bytes(head: bytes) -> str:
    """The container the leading bytes announce, e.g. ``"mp4"``; raise NotAVideo otherwise.

    This is the magic-byte check only; :func:`sniff` on a path also confirms with PyAV.
    """
    image = _image_kind(head)
    if image is not None:
        raise NotAVideo(f"an image ({image}), not a video")
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AUDIO_BRANDS:
            shown = brand.decode("ascii").strip()
            raise NotAVideo(f"an audio file (MP4 brand {shown}), not a video")
        return "mov" if brand == b"qt  " else "mp4"
    if head[4:8] in _QT_ATOMS:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head[:64] else "matroska"
    if head[:4] == b"RIFF":
        if head[8:12] == b"AVI ":
            return "avi"
        raise NotAVideo(f"a RIFF {head[8:12]!r} file, not a video")
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg-ps"
    if head.startswith(_ASF_GUID):
        return "asf"
    if _is_mpegts(head, 188, 0) or _is_mpegts(head, 192, 4):
        return "mpegts"
    if head.startswith((b"ID3", b"fLaC")):
        raise NotAVideo("an audio file, not a video")
    raise NotAVideo("not a recognised video container")
