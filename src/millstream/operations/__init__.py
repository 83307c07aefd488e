"""Operations the CLI drives on a running system: supervising an app's processes, loading an
app by reference, replaying failed records, and running and promoting shadow versions."""

from __future__ import annotations

from millstream.operations._loader import load_app
from millstream.operations._replay import Replayed, list_exceptions, replay, replayed_ids
from millstream.operations._shadow import (
    Difference,
    StreamDiff,
    diff_outputs,
    promote,
)
from millstream.operations._supervisor import Child, Supervisor, run_command

__all__ = ["Child", "Difference", "Replayed", "StreamDiff", "Supervisor", "diff_outputs",
           "list_exceptions", "load_app", "promote", "replay", "replayed_ids", "run_command"]
