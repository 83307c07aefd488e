"""How much one request of the console may read or show: a huge record or stream never
loads whole. Pages cut at these bounds and say that they did. Also how long a sign-in lasts
and how many wrong tokens are heard."""

from __future__ import annotations

__all__ = ["MAX_DIFF", "MAX_FORM_BYTES", "MAX_PAYLOAD", "MAX_RECORDS", "MAX_SCAN", "POLL_MS",
           "SESSION_S", "SIGNIN_TRIES", "SIGNIN_WINDOW_S"]

#: bytes of one payload shown (the rest is cut, with the full size said)
MAX_PAYLOAD = 64 * 1024
#: records one page, tail or search returns
MAX_RECORDS = 200
#: records one search reads before it stops and says where it stopped
MAX_SCAN = 100_000
#: records of each side a shadow's diff compares (it holds their values while it compares)
MAX_DIFF = 10_000
#: bytes of an action's form
MAX_FORM_BYTES = 64 * 1024
#: how often the pages' scripts fetch fresh data, in milliseconds
POLL_MS = 2000
#: how long a sign-in lasts, in seconds
SESSION_S = 12 * 3600
#: wrong tokens one address may send within SIGNIN_WINDOW_S before sign-in is refused (429)
SIGNIN_TRIES = 5
SIGNIN_WINDOW_S = 60.0
