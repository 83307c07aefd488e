"""Files: large objects stored once, by URL, and passed through streams as references.

``open_files()`` opens the configured store (``file://$MILLSTREAM_HOME/files`` by default);
``file://`` is the local store, ``s3://`` the S3 one (s3fs, extra ``s3``), and any other
fsspec protocol works through sidecar metadata. ``check_files()`` checks a store works
(``millstream doctor``). A ``FileRef`` travels in records; ``claim_checked`` sends values over
a size through the store; ``pinned`` keeps what a writer put from ``run_gc`` until its
references are recorded.
"""

from __future__ import annotations

from millstream.files._base import FileRef, FileStore, FileWriter, Source
from millstream.files._claimcheck import ClaimCheck, claim_checked
from millstream.files._gc import GcReport, collect_garbage, find_references, run_gc
from millstream.files._open import check_files, open_files
from millstream.files._pinning import pinned

__all__ = [
    "ClaimCheck",
    "FileRef",
    "FileStore",
    "FileWriter",
    "GcReport",
    "Source",
    "check_files",
    "claim_checked",
    "collect_garbage",
    "find_references",
    "open_files",
    "pinned",
    "run_gc",
]
