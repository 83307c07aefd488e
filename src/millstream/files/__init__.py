"""Files: large objects stored once, by URL, and passed through streams as references.

``open_files()`` opens the configured store (``file://$MILLSTREAM_HOME/files`` by default);
``file://`` is the local store, ``s3://`` the S3 one (s3fs, extra ``s3``), and any other
fsspec protocol works through sidecar metadata. Backends are imported lazily; ``_BACKENDS`` is
the one table from scheme to backend, for ``open_files`` and ``check_files`` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from millstream._backend import Backend
from millstream._writable import check_directory
from millstream.config import load_config
from millstream.errors import ConfigError, UnavailableError
from millstream.files._base import FileRef, FileStore, FileWriter, Source
from millstream.files._claimcheck import ClaimCheck, claim_checked
from millstream.files._gc import collect_garbage, find_references
from millstream.files._pinning import pinned

__all__ = [
    "ClaimCheck",
    "FileRef",
    "FileStore",
    "FileWriter",
    "Source",
    "check_files",
    "claim_checked",
    "collect_garbage",
    "find_references",
    "open_files",
    "pinned",
]


def _options(url: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The URL's query merged with ``options`` (which win)."""
    merged: dict[str, Any] = dict(parse_qsl(urlsplit(url).query))
    merged.update(options or {})
    return merged


def _file_path(url: str, options: Mapping[str, Any] | None) -> Path:
    parts = urlsplit(url)
    if _options(url, options):
        raise ConfigError(f"files URL {url!r}: file:// takes no options")
    if parts.netloc not in ("", "localhost"):
        raise ConfigError(f"files URL {url!r}: file:// URLs name no host (file:///path)")
    return Path(unquote(parts.path))


def _open_file(url: str, home: Path, options: Mapping[str, Any] | None) -> FileStore:
    from millstream.files._local import LocalStore

    return LocalStore(_file_path(url, options))


def _check_file(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    return check_directory(_file_path(url, options), "MILLSTREAM_FILES", "directory")


def _open_s3(url: str, home: Path, options: Mapping[str, Any] | None) -> FileStore:
    from millstream.files._s3 import S3Store

    base = url.split("?", 1)[0]
    return S3Store("s3://" + base.split("://", 1)[1], _options(url, options),
                   cache_dir=home / "cache" / "files")


def _check_s3(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.files._s3 import S3Store

    store = _open_s3(url, home, options)
    try:
        assert isinstance(store, S3Store)
        return store.check()
    finally:
        store.close()


def _open_fsspec(url: str, home: Path, options: Mapping[str, Any] | None) -> FileStore:
    from millstream.files._fsspec import FsspecStore

    try:
        return FsspecStore(url.split("?", 1)[0], _options(url, options),
                           cache_dir=home / "cache" / "files")
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"files URL {url!r}: fsspec cannot open it: {exc}") from exc


def _check_fsspec(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    store = _open_fsspec(url, home, options)
    try:
        found = next(iter(store.list()), None)
    except (OSError, ValueError) as exc:
        raise UnavailableError(f"{store.url}: listing failed ({exc})") from exc
    finally:
        store.close()
    return f"{store.url} lists, {'objects' if found else 'no objects yet'}"


#: scheme → backend; any other scheme goes to fsspec (with sidecar metadata)
_BACKENDS: dict[str, Backend[FileStore]] = {
    "file": Backend(_open_file, _check_file),
    "s3": Backend(_open_s3, _check_s3),
    "s3a": Backend(_open_s3, _check_s3),
}
_FSSPEC: Backend[FileStore] = Backend(_open_fsspec, _check_fsspec)


def _backend(target: str) -> Backend[FileStore]:
    if "://" not in target:
        raise ConfigError(
            f"files URL {target!r} is not a URL; use file:///path, s3://bucket/prefix or "
            "another fsspec URL"
        )
    return _BACKENDS.get(urlsplit(target).scheme, _FSSPEC)


def open_files(url: str | None = None, *, options: Mapping[str, Any] | None = None
               ) -> FileStore:
    """Open the file store named by ``url`` (default: the configured one).

    ``options`` are fsspec storage options (for S3: ``endpoint_url``, ``key``, ``secret``,
    ``client_kwargs``…), merged over the URL's query (``s3://bucket/p?endpoint_url=…``).
    """
    config = load_config(files=url)
    return _backend(config.files).open(config.files, config.home, options)


def check_files(url: str | None = None, *, options: Mapping[str, Any] | None = None) -> str:
    """Check the file store as ``open_files`` would open it, without writing: a ``file://``
    directory is writable or can be created; S3 answers, takes the credentials and has the
    bucket. Returns what was found; raises the millstream error naming the fix."""
    config = load_config(files=url)
    return _backend(config.files).check(config.files, config.home, options)
