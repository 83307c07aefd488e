"""Operations the CLI drives on a running system: supervising an app's processes, loading an
app by reference, replaying failed records, running and promoting shadow versions, and
the tables operations shared by the CLI and the console (``_tables``)."""

from __future__ import annotations

from millstream.operations._loader import load_app
from millstream.operations._replay import Replayed, list_exceptions, replay, replayed_ids
from millstream.operations._shadow import (
    Difference,
    ShadowTarget,
    StreamDiff,
    diff_outputs,
    diff_shadow,
    find_shadows,
    promote,
    promote_shadow,
)
from millstream.operations._supervisor import Child, Supervisor, run_command

__all__ = ["Child", "Difference", "Replayed", "ShadowTarget", "StreamDiff", "Supervisor",
           "diff_outputs", "diff_shadow", "find_shadows", "list_exceptions", "load_app",
           "promote", "promote_shadow", "replay", "replayed_ids", "run_command"]
