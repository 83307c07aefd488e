"""Files: large objects stored once, by URL, and passed through streams as references.

``open_files()`` opens the configured store (``file://$MILLSTREAM_HOME/files`` by default);
``file://`` is the local store, ``s3://`` the S3 one (s3fs, extra ``s3``), and any other
fsspec protocol works through sidecar metadata. Backends are imported lazily.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from millstream.config import load_config
from millstream.errors import ConfigError
from millstream.files.base import FileRef, FileStore, FileWriter, Source
from millstream.files.claimcheck import ClaimCheck, claim_checked
from millstream.files.gc import collect_garbage, find_references

__all__ = [
    "ClaimCheck",
    "FileRef",
    "FileStore",
    "FileWriter",
    "Source",
    "claim_checked",
    "collect_garbage",
    "find_references",
    "open_files",
]


def open_files(url: str | None = None, *, options: Mapping[str, Any] | None = None
               ) -> FileStore:
    """Open the file store named by ``url`` (default: the configured one).

    ``options`` are fsspec storage options (for S3: ``endpoint_url``, ``key``, ``secret``,
    ``client_kwargs``…), merged over the URL's query (``s3://bucket/p?endpoint_url=…``).
    """
    config = load_config(files=url)
    target = config.files
    if "://" not in target:
        raise ConfigError(
            f"files URL {target!r} is not a URL; use file:///path, s3://bucket/prefix or "
            "another fsspec URL"
        )
    parts = urlsplit(target)
    scheme = parts.scheme
    merged: dict[str, Any] = dict(parse_qsl(parts.query))
    merged.update(options or {})
    base = target.split("?", 1)[0]
    cache = config.home / "cache" / "files"
    if scheme == "file":
        if merged:
            raise ConfigError(f"files URL {target!r}: file:// takes no options")
        if parts.netloc not in ("", "localhost"):
            raise ConfigError(f"files URL {target!r}: file:// URLs name no host (file:///path)")
        from millstream.files.local import LocalStore

        return LocalStore(unquote(parts.path))
    if scheme in ("s3", "s3a"):
        from millstream.files.s3 import S3Store

        return S3Store("s3://" + base.split("://", 1)[1], merged, cache_dir=cache)
    from millstream.files.fsspec_store import FsspecStore

    try:
        return FsspecStore(base, merged, cache_dir=cache)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"files URL {target!r}: fsspec cannot open it: {exc}") from exc
