"""Reading an object: a byte range of its stored bytes, checked to end where the record says
and, on a full read, against its recorded SHA-256 (``CorruptDataError`` naming the object)."""

from __future__ import annotations

import hashlib
import io
from typing import BinaryIO

from millstream.errors import CorruptDataError
from millstream.files._verify import DAMAGED

__all__ = ["RangeReader"]


class RangeReader(io.RawIOBase):
    """Yields ``raw`` up to ``length`` bytes; when ``sha256`` is given (a full read), checks
    the hash once the last byte was read and raises ``CorruptDataError`` naming ``what``."""

    def __init__(self, raw: BinaryIO, length: int, sha256: str | None, what: str) -> None:
        self._raw = raw
        self._left = length
        self._length = length
        self._expect = sha256
        self._digest = hashlib.sha256() if sha256 is not None else None
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(b).cast("B")
        want = min(len(view), self._left)
        n = self._raw.readinto(view[:want])  # type: ignore[attr-defined]
        if not n:
            raise CorruptDataError(
                f"{self._what}: stored object ended {self._left} byte(s) early "
                f"(expected {self._length} bytes); {DAMAGED}"
            )
        self._left -= n
        if self._digest is not None:
            self._digest.update(view[:n])
            if self._left == 0:
                self._check_end()
        return int(n)

    def _check_end(self) -> None:
        assert self._digest is not None
        extra = self._raw.read(1)
        if extra:
            raise CorruptDataError(
                f"{self._what}: stored object is longer than the {self._length} bytes "
                f"recorded; {DAMAGED}"
            )
        actual = self._digest.hexdigest()
        if actual != self._expect:
            raise CorruptDataError(
                f"{self._what}: SHA-256 mismatch: recorded {self._expect}, read {actual}; "
                f"{DAMAGED}"
            )

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()
