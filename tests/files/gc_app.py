"""An app whose service stores a file with ``ctx.files`` and sends a claim-checked record
referring to it; importable by child processes as ``tests.files.gc_app:app``.

With ``GC_APP_HOLD=PATH`` the handler, once its file is stored, creates ``PATH.reached`` and
waits until ``PATH`` exists before it returns its record: a service mid-way through a record.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel

from millstream.files import FileRef
from millstream.service import App, Context

#: Outputs over this many bytes travel as claim-checks.
CLAIM_BYTES = 1024


class Upload(BaseModel):
    id: int
    size: int


class Stored(BaseModel):
    id: int
    ref: FileRef
    notes: str  # long enough that the record is claim-checked


def blob(upload: Upload) -> bytes:
    """The bytes the service stores for ``upload``."""
    return bytes([upload.id % 251]) * upload.size


app = App("gcapp", partitions=1, claim_check_bytes=CLAIM_BYTES)


@app.service(inputs={"gc-uploads": Upload}, outputs={"gc-stored": Stored})
def stash(upload: Upload, ctx: Context) -> Stored:
    ref = ctx.files.put("blob.bin", blob(upload), content_type="application/octet-stream")
    hold = os.environ.get("GC_APP_HOLD")
    if hold:
        Path(f"{hold}.reached").touch()
        while not Path(hold).exists():
            time.sleep(0.01)
    return Stored(id=upload.id, ref=ref, notes="n" * (2 * CLAIM_BYTES))
