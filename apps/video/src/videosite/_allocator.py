"""The process's C allocator kept from hoarding freed memory: ``tune_allocator()``.

The site's memory is mostly not Python objects but C buffers: decoded frames and packets
(FFmpeg through PyAV), encoder state (x264), SQLite pages, and the upload and media chunks
handed between threads. glibc's malloc, left to itself, keeps most of them once freed:

* it raises its mmap threshold each time a block that had a mapping of its own is freed (up
  to 32 MiB), so after the first large frame, blocks of that size come from an arena's heap,
  and the trim threshold doubles with it (up to 64 MiB);
* a heap gives memory back only from its top, past that trim threshold;
* each thread that allocates may get an arena of its own, up to 8 per core.

Freed frames and chunks then stay resident in every arena that ever held them. The site's
memory soak (``apps/video/bench/soak.py``) found Python's own objects flat from round to
round (tracemalloc) while the server stayed about 250 MB above its start, about 165 MB of it
free blocks that one ``malloc_trim(0)`` gave back.

``tune_allocator`` caps the arenas at ``ARENA_MAX`` (glibc reads ``M_ARENA_MAX`` when a
thread first needs an arena, so call it before the threads start) and starts a thread that
calls ``malloc_trim(0)`` every ``VIDEOSITE_MALLOC_TRIM_S`` seconds (default
``TRIM_EVERY_S``; 0: never), which returns the free pages of every arena, middle of the
heaps included (about 1 ms when little is free, tens of ms after a burst, one arena locked
at a time). Fixing the mmap threshold instead was measured too: it bounds memory without a
thread, but every block above it is then mapped and zero-filled anew (a 1 MiB copy took 430
µs instead of 45 µs, and the server's CPU for 600 MB of uploads went from 2.8-3.7 s to
4.8-5.6 s). On a C library other than glibc it does nothing; when ``MALLOC_ARENA_MAX`` or
``GLIBC_TUNABLES`` is set, the arenas are left as the operator set them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import threading

__all__ = ["ARENA_MAX", "TRIM_EVERY_S", "tune_allocator"]

log = logging.getLogger(__name__)

#: at most this many malloc arenas (glibc's default is 8 per core)
ARENA_MAX = 4
#: seconds between two ``malloc_trim(0)``, unless VIDEOSITE_MALLOC_TRIM_S says otherwise
TRIM_EVERY_S = 5.0
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
_lock = threading.Lock()
_trimmer: threading.Thread | None = None


def tune_allocator(environ: dict[str, str] | None = None) -> bool:
    """Cap glibc's arenas and start the trimming thread, once per process (later calls do
    nothing); whether the trimming thread runs. Raises ValueError for a
    ``VIDEOSITE_MALLOC_TRIM_S`` that is not a number of seconds."""
    global _trimmer
    env = os.environ if environ is None else environ
    raw = env.get("VIDEOSITE_MALLOC_TRIM_S", "")
    try:
        every = float(raw) if raw else TRIM_EVERY_S
    except ValueError:
        raise ValueError(f"VIDEOSITE_MALLOC_TRIM_S={raw!r} is not a number of seconds "
                         "(0: never trim)") from None
    if platform.libc_ver()[0] != "glibc":
        return False
    with _lock:
        if _trimmer is not None:
            return True
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if env.get("MALLOC_ARENA_MAX") or env.get("GLIBC_TUNABLES"):
            log.info("malloc arenas left as MALLOC_ARENA_MAX / GLIBC_TUNABLES set them")
        elif libc.mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(ARENA_MAX)) != 1:
            log.warning("mallopt(M_ARENA_MAX, %d) was refused: glibc keeps its default",
                        ARENA_MAX)
        if every <= 0:
            return False
        _trimmer = threading.Thread(target=_trim_forever, args=(libc, every),
                                    name="malloc-trim", daemon=True)
        _trimmer.start()
        return True


def _trim_forever(libc: ctypes.CDLL, every: float) -> None:
    wait = threading.Event()
    while not wait.wait(every):
        libc.malloc_trim(ctypes.c_size_t(0))
