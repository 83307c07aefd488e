"""What a join reports to the exceptions stream: a late record, an unmatched one."""

from __future__ import annotations

__all__ = ["LateJoinRecord", "UnmatchedJoinRecord"]


class LateJoinRecord(Exception):
    """A join's input record came after the watermark passed what it could still join (a
    window's late record is ``LateRecord``). On the exceptions stream with stage ``late``."""

    #: the exception record's stage (the runtime reads ``stage`` off what a handler reports)
    stage = "late"


class UnmatchedJoinRecord(Exception):
    """An inner join's record found nothing to join with (reported only when asked, with
    stage ``join``)."""

    stage = "join"


# exception records name an error by its class's module: give the public one
for _cls in (LateJoinRecord, UnmatchedJoinRecord):
    _cls.__module__ = "millstream.service"
