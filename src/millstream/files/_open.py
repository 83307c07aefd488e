"""Open a file store by URL, or check that it works (``millstream doctor``), through the one
table of backends (``millstream._backends``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from millstream._backends import FILES
from millstream.config import load_config
from millstream.files._base import FileStore

__all__ = ["check_files", "open_files"]


def open_files(url: str | None = None, *, options: Mapping[str, Any] | None = None
               ) -> FileStore:
    """Open the file store named by ``url`` (default: the configured one).

    ``options`` are fsspec storage options (for S3: ``endpoint_url``, ``key``, ``secret``,
    ``client_kwargs``…), merged over the URL's query (``s3://bucket/p?endpoint_url=…``).
    """
    config = load_config(files=url)
    return FILES.open(config.files, config.home, options)


def check_files(url: str | None = None, *, options: Mapping[str, Any] | None = None) -> str:
    """Check the file store as ``open_files`` would open it, without writing: a ``file://``
    directory is writable or can be created; S3 answers, takes the credentials and has the
    bucket. Returns what was found; raises the millstream error naming the fix."""
    config = load_config(files=url)
    return FILES.check(config.files, config.home, options)
