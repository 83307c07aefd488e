"""Fixtures for the video site's tests: sample clips generated with PyAV, once per session.

``videosite`` is imported from ``apps/video/src`` when it is not installed in the venv.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("videosite") is None:  # not installed: use the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from videosite.media.samples import make_clip

# name -> (width, height, seconds, audio, rotate, suffix) as stored in the file
CLIPS = {
    "landscape": (320, 240, 2.0, True, 0, ".mp4"),
    "wide": (640, 360, 3.0, True, 0, ".mp4"),
    "rotated": (320, 240, 2.0, False, 90, ".mp4"),
    "portrait": (360, 640, 2.0, True, 0, ".mp4"),
    "tiny": (160, 120, 1.0, True, 0, ".mp4"),
    "matroska": (160, 120, 0.6, True, 0, ".mkv"),
    "mpegts": (160, 120, 0.6, True, 0, ".ts"),
}


@pytest.fixture(scope="session")
def clip_specs() -> dict[str, tuple[int, int, float, bool, int, str]]:
    """CLIPS: name -> (width, height, seconds, audio, rotate, suffix)."""
    return CLIPS


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every clip of CLIPS, written once: name -> path."""
    folder = tmp_path_factory.mktemp("clips")
    made = {}
    for name, (width, height, seconds, audio, rotate, suffix) in CLIPS.items():
        path = folder / f"{name}{suffix}"
        make_clip(path, width, height, seconds, audio=audio, rotate=rotate)
        made[name] = path
    return made
