"""The streams an app's code reads and writes: claim-checked when the app declares it.

An ``App(..., claim_check_bytes=N)`` sends values over N bytes through the file store; its
services, and a test platform reading what they wrote, must see the original values. Both get
their streams from ``app_streams``, so a claim-checked record is unwrapped in one place
(``ClaimCheck.check_out``) before any codec decodes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from millstream.errors import InvalidRequestError
from millstream.files._base import FileStore
from millstream.files._claimcheck import ClaimCheck, claim_checked
from millstream.streams._base import Streams

if TYPE_CHECKING:
    from millstream.service._app import App

__all__ = ["app_streams"]


def app_streams(app: App, streams: Streams, files: FileStore | None) -> Streams:
    """``streams`` as ``app`` uses them: wrapped in its claim-check, if it declares one
    (which needs ``files``); else ``streams`` itself."""
    if app.claim_check_bytes is None:
        return streams
    if files is None:
        raise InvalidRequestError(
            f"app {app.name!r} claim-checks values over {app.claim_check_bytes} bytes, "
            "which needs a file store: pass files=millstream.files.open_files()")
    return claim_checked(streams, ClaimCheck(files, threshold_bytes=app.claim_check_bytes))
