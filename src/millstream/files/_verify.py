"""Checking a local file against its recorded SHA-256 once per stat signature.

A file's *signature* is its inode, size, mtime and ctime (nanoseconds). Writing, truncating,
appending, ``utime`` (even one that puts the old mtime back), ``chmod`` and replacing the file
all change it: the kernel sets the ctime on every change to an inode and no call can set it
back. So a file whose signature equals one recorded right after its bytes hashed to the
recorded SHA-256 still holds those bytes — unless they rotted below the filesystem, which
only reading them all can show (full reads always hash).

A signature is worth recording only when the file's last change is older than ``RACY_S``
when the hash starts: timestamps have a granularity (a clock tick on Linux, up to a second or
two on some filesystems), and a change made within the same tick as the recorded ctime could
leave every field equal — git's "racily clean" files. Such a file is hashed again at its next
use instead, and every later change gets a ctime the record does not have.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import NamedTuple

from millstream.errors import CorruptDataError

__all__ = ["DAMAGED", "RACY_S", "Signature", "signature", "verify_fd"]

#: A file changed less than this long ago is hashed again at each use (see the docstring).
RACY_S = 2.0
#: What a message about a damaged object tells the user to do.
DAMAGED = ("the stored bytes changed after they were written (in place, by another program "
           "or by the disk); restore the original and put it again, or delete the object")
_CHUNK = 1024 * 1024


class Signature(NamedTuple):
    """What ``stat`` says about a file that any change to it alters."""

    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int


def signature(st: os.stat_result) -> Signature:
    return Signature(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def verify_fd(fd: int, sha256: str, size: int, what: str) -> Signature | None:
    """Hash the whole file open as ``fd`` (without moving its position) and raise
    ``CorruptDataError`` naming ``what`` unless it has ``size`` bytes hashing to ``sha256``.

    Returns the file's signature when it may be recorded as verified: unchanged while it was
    hashed and last changed at least ``RACY_S`` before; else ``None``.
    """
    started = time.time_ns()
    before = signature(os.fstat(fd))
    if before.size != size:
        raise CorruptDataError(
            f"{what}: the file has {before.size} bytes, {size} were recorded; {DAMAGED}")
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    offset = 0
    while n := os.preadv(fd, [buffer], offset):
        digest.update(view[:n])
        offset += n
    actual = digest.hexdigest()
    if offset != size or actual != sha256:
        raise CorruptDataError(
            f"{what}: SHA-256 mismatch: recorded {sha256}, read {actual} ({offset} bytes); "
            f"{DAMAGED}")
    if signature(os.fstat(fd)) != before or started - before.ctime_ns < RACY_S * 1e9:
        return None
    return before
