"""Generate small test clips with PyAV: a moving pattern (every frame differs) and a tone."""

from __future__ import annotations

import math
import os
import struct

import av
from PIL import Image, ImageDraw

__all__ = ["make_clip"]

_SAMPLE_RATE = 44100
_TONE_HZ = 440.0


def _picture(width: int, height: int, index: int) -> Image.Image:
    """Frame ``index``: a shifting background, a bar that moves and a frame counter."""
    image = Image.new("RGB", (width, height), ((index * 9) % 256, 60, 120))
    draw = ImageDraw.Draw(image)
    bar = max(width // 6, 4)
    x = (index * 11) % max(width - bar, 1)
    draw.rectangle((x, height // 4, x + bar, 3 * height // 4), fill=(250, 230, 40))
    draw.rectangle((0, 0, width // 8, height // 8), fill=(255, 255, 255))  # marks top-left
    draw.text((width // 2, height // 8), str(index), fill=(255, 255, 255))
    return image


def _tone(start: int, count: int) -> bytes:
    step = 2.0 * math.pi * _TONE_HZ / _SAMPLE_RATE
    return struct.pack(
        f"<{count}h", *(int(9000 * math.sin(step * (start + i))) for i in range(count))
    )


def make_clip(
    path: str | os.PathLike[str],
    width: int,
    height: int,
    seconds: float,
    fps: int = 25,
    audio: bool = True,
    rotate: int = 0,
    keyframe_interval_s: float = 1.0,
    start_s: float = 0.0,
    b_frames: int = 0,
    audio_delay_s: float = 0.0,
) -> None:
    """Write an H.264 (+ mono AAC tone if ``audio``) video of ``width`` x ``height`` as
    stored, in the container the file name's suffix names (MP4, MOV, MKV, MPEG-TS...).

    ``rotate`` is the clockwise display rotation written to the display matrix (so a phone
    portrait clip is ``width > height`` with ``rotate=90``). Key frames every
    ``keyframe_interval_s`` seconds. Timestamps start at ``start_s`` (a broadcast clock;
    MOV and MP4 write it as an edit list); ``b_frames`` B-frames between references (MOV and
    MP4 then write an edit list that hides their delay). The tone starts ``audio_delay_s``
    after the first frame (as a broadcast stream's audio often does) and lasts as long as
    the video.
    """
    frames = round(seconds * fps)
    first_video = round(start_s * fps)
    first_audio = round((start_s + audio_delay_s) * _SAMPLE_RATE)
    with av.open(os.fspath(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.gop_size = max(round(keyframe_interval_s * fps), 1)
        video.options = {"preset": "ultrafast", "sc_threshold": "0", "bf": str(b_frames)}
        if rotate:
            video.set_display_rotation(-rotate)  # PyAV counts counter-clockwise
        sound = container.add_stream("aac", rate=_SAMPLE_RATE, layout="mono") if audio else None
        done = 0  # audio samples written so far
        for index in range(frames):
            picture = _picture(width, height, index)
            frame = av.VideoFrame.from_image(picture)  # type: ignore[no-untyped-call]  # PyAV stub
            frame.pts = first_video + index
            container.mux(video.encode(frame))
            if sound is None:
                continue
            until = round((index + 1) * _SAMPLE_RATE / fps)  # keep audio in step with video
            while done < until:
                count = min(1024, until - done)
                chunk = av.AudioFrame(format="s16", layout="mono", samples=count)
                chunk.planes[0].update(_tone(done, count))
                chunk.sample_rate, chunk.pts = _SAMPLE_RATE, first_audio + done
                container.mux(sound.encode(chunk))
                done += count
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))
