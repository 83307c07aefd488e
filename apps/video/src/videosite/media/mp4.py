"""Read the top-level layout of an MP4 file: its boxes, init section and fragments.

Only what the HLS playlists need: where the init section (``ftyp`` + ``moov``) ends, and
each fragment's (``moof`` + ``mdat``) byte range and duration. Durations come from the
video track's ``sidx`` box, which the transcoder asks FFmpeg to write at the front.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["Box", "Fragment", "Layout", "read_boxes", "read_layout"]


@dataclass(frozen=True)
class Box:
    """A top-level box: its four-letter type, byte offset and size (header included)."""

    type: str
    offset: int
    size: int


@dataclass(frozen=True)
class Fragment:
    """A ``moof`` + ``mdat`` pair: a byte range and its duration."""

    offset: int
    length: int
    duration_s: float


@dataclass(frozen=True)
class Layout:
    """A fragmented MP4's init section length and its fragments in order."""

    init_length: int
    fragments: tuple[Fragment, ...]


def _boxes(f: BinaryIO, file_size: int) -> list[Box]:
    boxes: list[Box] = []
    offset = 0
    while offset + 8 <= file_size:
        f.seek(offset)
        size, kind = struct.unpack(">I4s", f.read(8))
        if size == 1:
            (size,) = struct.unpack(">Q", f.read(8))
        elif size == 0:
            size = file_size - offset
        if size < 8:
            raise ValueError(f"MP4 box at byte {offset} has an impossible size {size}")
        boxes.append(Box(kind.decode("latin-1"), offset, size))
        offset += size
    return boxes


def read_boxes(path: str | os.PathLike[str]) -> list[Box]:
    """The file's top-level boxes in order (``ftyp``, ``moov``, ``mdat``…)."""
    path = Path(path)
    with path.open("rb") as f:
        return _boxes(f, path.stat().st_size)


def _sidx_durations(payload: bytes) -> tuple[int, list[float]]:
    """(reference_ID, subsegment durations in seconds) of a ``sidx`` box's payload."""
    version = payload[0]
    reference_id, timescale = struct.unpack_from(">II", payload, 4)
    at = 12 + (8 if version == 0 else 16)  # earliest_presentation_time, first_offset
    (count,) = struct.unpack_from(">H", payload, at + 2)
    at += 4
    durations = []
    for _ in range(count):
        _, duration, _ = struct.unpack_from(">III", payload, at)
        durations.append(duration / timescale)
        at += 12
    return reference_id, durations


def read_layout(path: str | os.PathLike[str], track_id: int = 1) -> Layout:
    """The init section and fragments of a fragmented MP4 with a global ``sidx``.

    ``track_id`` names the track whose ``sidx`` gives the durations (the video track).
    Raises ValueError if the file is not laid out that way.
    """
    path = Path(path)
    with path.open("rb") as f:
        boxes = _boxes(f, path.stat().st_size)
        durations: list[float] | None = None
        for box in boxes:
            if box.type == "sidx":
                f.seek(box.offset + 8)
                reference_id, found = _sidx_durations(f.read(box.size - 8))
                if reference_id == track_id:
                    durations = found
                    break
    kinds = [box.type for box in boxes]
    if "moov" not in kinds or durations is None:
        raise ValueError(f"{path.name} is not a fragmented MP4 with a sidx for track {track_id}")
    moov = boxes[kinds.index("moov")]
    starts = [i for i, box in enumerate(boxes) if box.type == "moof"]
    if len(starts) != len(durations):
        raise ValueError(f"{path.name}: {len(starts)} fragments but {len(durations)} durations")
    fragments = []
    for i, duration in zip(starts, durations, strict=True):
        mdat = boxes[i + 1]
        if mdat.type != "mdat":
            raise ValueError(f"{path.name}: the moof at byte {boxes[i].offset} has no mdat")
        start = boxes[i].offset
        fragments.append(Fragment(start, mdat.offset + mdat.size - start, duration))
    return Layout(moov.offset + moov.size, tuple(fragments))
