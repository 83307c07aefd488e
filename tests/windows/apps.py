"""Apps the window tests run: clicks per user, with their event time in a payload field."""

from __future__ import annotations

from pydantic import BaseModel

from millstream.service import App, Count, Hopping, Sum, Tumbling, WindowRow


class Click(BaseModel):
    user: str
    at: float  # event time, seconds since the epoch
    amount: int = 1


def clicks_app(*, window: object = None, aggregate: object = None, emit: str = "final",
               lateness: float = 0, grace: float = 0, retention: float | None = 86400,
               idle_timeout: float | None = 30, exactly_once: bool = False,
               partitions: int = 2, time: object = "at") -> App:
    """An app with one windowed service, ``counts``, over stream ``clicks`` (keyed by
    user), writing table ``counts`` and results to ``results``."""
    app = App("win", partitions=partitions,
              processing="exactly-once" if exactly_once else "at-least-once")
    clicks = app.stream("clicks", Click)
    results = app.stream("results", WindowRow)
    app.windowed("counts", clicks, window=window or Tumbling(60),  # type: ignore[arg-type]
                 aggregate=aggregate or Count(),  # type: ignore[arg-type]
                 time=time, lateness=lateness, grace=grace,  # type: ignore[arg-type]
                 idle_timeout=idle_timeout, emit=emit,  # type: ignore[arg-type]
                 output=results, retention=retention)
    return app


__all__ = ["Click", "Count", "Hopping", "Sum", "Tumbling", "clicks_app"]
