"""What several video-site tests share."""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av

from millstream.runtime import ServiceRunner

__all__ = ["FFMPEG_MAX_ALLOC", "STARVED", "Idle", "faststart", "ffmpeg_allocations_at_most",
           "half"]

#: FFmpeg's allocation limit by default (``max_alloc_size`` in libavutil/mem.c)
FFMPEG_MAX_ALLOC = 2**31 - 1
#: an allocation limit under which FFmpeg cannot open a container (ENOMEM in av.open)
STARVED = 16 * 1024


class Idle:
    """``until`` for ``ServiceRunner.run``: true once a poll read nothing."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.seen = -1

    def __call__(self, runner: ServiceRunner) -> bool:
        assert time.monotonic() < self.deadline, f"{runner.spec.name} still busy"
        count = runner.statistics().records_in
        quiet, self.seen = count == self.seen, count
        return quiet


def _libavutil() -> ctypes.CDLL:
    """The libavutil PyAV has loaded (from this process's memory map)."""
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libavutil" in line}
    assert len(paths) == 1, paths
    lib = ctypes.CDLL(paths.pop())
    lib.av_max_alloc.argtypes = [ctypes.c_size_t]
    lib.av_max_alloc.restype = None
    return lib


@contextmanager
def ffmpeg_allocations_at_most(size: int) -> Iterator[None]:
    """FFmpeg refuses any allocation over ``size`` bytes (ENOMEM) inside the block."""
    av.open  # noqa: B018  (PyAV, and so libavutil, is loaded)
    lib = _libavutil()
    lib.av_max_alloc(size)
    try:
        yield
    finally:
        lib.av_max_alloc(FFMPEG_MAX_ALLOC)


def faststart(source: Path, target: Path) -> Path:
    """``source`` remuxed with its index (moov) before the media data."""
    with av.open(str(source)) as src, av.open(str(target), "w", format="mp4",
                                              options={"movflags": "faststart"}) as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        for packet in src.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)
    return target


def half(source: Path, target: Path) -> Path:
    """The first half of ``source``'s bytes, as ``target``."""
    data = source.read_bytes()
    target.write_bytes(data[:len(data) // 2])
    return target
