"""The demo's viewers: view events for ready videos, sent through the site's HTTP API as the
player sends them, and the wait until the view windows count them; and its audience, which
goes on watching while the demo serves, so that the console shows the services at work.

Each view is a playback: ``start``, a ``progress`` every 10 s of the video, ``end`` at its
length. The site's throttle applies (every event comes from this process's address): a
refused event is sent again after the ``Retry-After`` the site gives, so none is lost.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence

from millstream.tables import Tables

from .client import ViewRefused, send_view
from .models import Video
from .trending import Trending, current_rows, ranked

__all__ = ["AUDIENCE_EVERY_S", "PROGRESS_EVERY_S", "VIEWS_PLAN", "keep_watching",
           "wait_counted", "watch"]

log = logging.getLogger(__name__)

#: views of the ready videos, in order: the first gets 4, the next 3 ...
VIEWS_PLAN = (4, 3, 2, 1)
#: a player's progress events, every this many seconds of video (site.js does the same)
PROGRESS_EVERY_S = 10
#: how many times one event is sent again after a 429
RETRIES = 10
#: the audience plays one video every this many seconds (its start and end events: under
#: the site's default throttle of one event a second per address)
AUDIENCE_EVERY_S = 3.0


def _send(url: str, video_id: str, event: str, session: str, position_s: float,
          sleep: Callable[[float], None]) -> None:
    for _ in range(RETRIES):
        try:
            send_view(url, video_id, event, session, position_s)
            return
        except ViewRefused as refused:
            if refused.status != 429 or refused.retry_after is None:
                raise
            sleep(refused.retry_after)
    raise ViewRefused(429, f"still throttled after {RETRIES} tries", None)


def watch(url: str, videos: Sequence[Video], plan: Sequence[int] = VIEWS_PLAN, *,
          sleep: Callable[[float], None] = time.sleep) -> dict[str, int]:
    """Play ``videos[i]`` ``plan[i]`` times through the site at ``url``; the views sent per
    video id (``ViewRefused`` if the site refuses an event for any reason but its limit)."""
    sent: dict[str, int] = {}
    for video, count in zip(videos, plan, strict=False):
        length = video.metadata.duration_s if video.metadata is not None else 0.0
        for _ in range(count):
            session = secrets.token_hex(8)
            _send(url, video.video_id, "start", session, 0.0, sleep)
            for at in range(PROGRESS_EVERY_S, int(length) + 1, PROGRESS_EVERY_S):
                _send(url, video.video_id, "progress", session, float(at), sleep)
            _send(url, video.video_id, "end", session, round(length, 3), sleep)
        sent[video.video_id] = count
    return sent


def wait_counted(tables: Tables, sent: dict[str, int], timeout: float,
                 interval: float = 0.2) -> list[Trending]:
    """The trending videos once the current window counts exactly ``sent`` (or when
    ``timeout`` seconds passed: then what it counts)."""
    deadline = time.monotonic() + timeout
    while True:
        now = time.time()
        found = ranked(current_rows(tables, now), now, limit=max(8, len(sent)))
        if {t.video_id: t.views for t in found} == sent or time.monotonic() > deadline:
            return found
        time.sleep(interval)


def keep_watching(url: str, videos: Sequence[Video], stop: threading.Event, *,
                  every_s: float = AUDIENCE_EVERY_S) -> threading.Thread:
    """Start a thread that plays ``videos`` in turn through the site at ``url``, one every
    ``every_s`` seconds, until ``stop`` is set (join it then). A refusal or a site that no
    longer answers ends it, logged."""

    def pause(seconds: float) -> None:  # a throttled event waits, unless told to stop
        stop.wait(seconds)

    def run() -> None:
        turn = 0
        while videos and not stop.wait(every_s):
            try:
                watch(url, [videos[turn % len(videos)]], [1], sleep=pause)
            except (ViewRefused, OSError) as exc:
                log.warning("the demo's audience stops: %s", exc)
                return
            turn += 1

    thread = threading.Thread(target=run, name="audience", daemon=True)
    thread.start()
    return thread
