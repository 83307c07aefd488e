"""Every backend millstream can open, by URL scheme: one table each for streams, files, tables.

A ``Family`` maps the schemes of one kind of backend to a ``Backend``: how to open it, and how
to check that it works. ``open_streams``/``open_files``/``open_tables`` open through it;
``millstream doctor`` checks through it, so a backend is checked by the code that opens it;
and a URL of no known scheme gets an error listing the family's schemes. The backends'
modules are imported inside the openers, so a client library (confluent-kafka, s3fs,
psycopg) is only needed when its scheme is used.

``check`` opens the backend as the application would, makes one harmless call that needs the
server, the credentials and the bucket or database, and returns what it found (one line); a
failure raises the millstream error the application would get, whose message says what to fix.
Nothing is created on a server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from millstream._writable import check_directory
from millstream.errors import ConfigError, UnavailableError

if TYPE_CHECKING:
    from millstream.files._base import FileStore
    from millstream.streams._base import Streams
    from millstream.tables._base import Tables

__all__ = ["FAMILIES", "FILES", "STREAMS", "TABLES", "Backend", "Family"]

T = TypeVar("T")

#: ``(url, home, options)``: the URL as configured, MILLSTREAM_HOME, options for the client
Opener = Callable[[str, Path, Mapping[str, Any] | None], T]
Checker = Callable[[str, Path, Mapping[str, Any] | None], str]


@dataclass(frozen=True, slots=True)
class Backend(Generic[T]):
    """How to open one backend, and how to check it (see the module docstring)."""

    open: Opener[T]
    check: Checker


@dataclass(frozen=True, slots=True)
class Family(Generic[T]):
    """One kind of backend (``streams``, ``files``, ``tables``): its schemes, and the
    backend a URL of none of them goes to (``fallback``: files' fsspec), if any."""

    name: str
    backends: Mapping[str, Backend[T]]
    #: URLs take the form ``scheme://…`` (else ``scheme:…`` is enough, as in ``local:``)
    slashes: bool
    #: complete URLs, shown after the schemes in the error
    examples: tuple[str, ...]
    fallback: Backend[T] | None = None
    fallback_name: str = ""

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(self.backends)

    def backend(self, url: str) -> Backend[T]:
        """The backend for ``url``'s scheme; ``ConfigError`` listing the schemes if none."""
        sep = "://" if self.slashes else ":"
        scheme = url.split(sep, 1)[0].lower() if sep in url else ""
        backend = self.backends.get(scheme)
        if backend is None and scheme and self.fallback is not None:
            backend = self.fallback
        if backend is None:
            raise ConfigError(f"{self.name} URL {url!r} has scheme {scheme or '(none)'!r}; "
                              f"supported: {self.supported()}")
        return backend

    def supported(self) -> str:
        """The schemes, as the error lists them, with examples."""
        listed = ", ".join(f"{s}:" for s in self.backends)
        if self.fallback is not None:
            listed += f" and {self.fallback_name}"
        return f"{listed} (for example {', '.join(self.examples)})"

    def open(self, url: str, home: Path, options: Mapping[str, Any] | None) -> T:
        return self.backend(url).open(url, home, options)

    def check(self, url: str, home: Path, options: Mapping[str, Any] | None) -> str:
        return self.backend(url).check(url, home, options)


# --- streams -------------------------------------------------------------------------------

def _open_local(url: str, home: Path, options: Mapping[str, Any] | None) -> Streams:
    from millstream.streams._local import LocalStreams

    return LocalStreams(url, home)


def _check_local(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.streams._local import check

    return check(url, home)


def _open_kafka(url: str, home: Path, options: Mapping[str, Any] | None) -> Streams:
    from millstream.streams._kafka import KafkaStreams

    return KafkaStreams(url, options)


def _check_kafka(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.streams._kafka import check

    return check(url, options)


STREAMS: Family[Streams] = Family(
    "streams",
    {"local": Backend(_open_local, _check_local), "kafka": Backend(_open_kafka, _check_kafka)},
    slashes=False,
    examples=("local:", "local:/path/to/dir", "kafka://host:9092"),
)


# --- files ---------------------------------------------------------------------------------

def _file_options(url: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The URL's query merged with ``options`` (which win)."""
    merged: dict[str, Any] = dict(parse_qsl(urlsplit(url).query))
    merged.update(options or {})
    return merged


def _file_path(url: str, options: Mapping[str, Any] | None) -> Path:
    parts = urlsplit(url)
    if _file_options(url, options):
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
    return S3Store("s3://" + base.split("://", 1)[1], _file_options(url, options),
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
        return FsspecStore(url.split("?", 1)[0], _file_options(url, options),
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


_S3: Backend[FileStore] = Backend(_open_s3, _check_s3)

#: any other scheme goes to fsspec (with sidecar metadata)
FILES: Family[FileStore] = Family(
    "files",
    {"file": Backend(_open_file, _check_file), "s3": _S3, "s3a": _S3},
    slashes=True,
    examples=("file:///path/to/dir", "s3://bucket/prefix"),
    fallback=Backend(_open_fsspec, _check_fsspec),
    fallback_name="any other fsspec protocol",
)


# --- tables --------------------------------------------------------------------------------

def _open_sqlite(url: str, home: Path, options: Mapping[str, Any] | None) -> Tables:
    from millstream.tables._sqlite import SqliteTables, sqlite_path

    return SqliteTables(url, sqlite_path(url))


def _check_sqlite(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.tables._sqlite import check, sqlite_path

    return check(sqlite_path(url))


def _open_postgres(url: str, home: Path, options: Mapping[str, Any] | None) -> Tables:
    from millstream.tables._postgres import PostgresTables

    return PostgresTables(url)


def _check_postgres(url: str, home: Path, options: Mapping[str, Any] | None) -> str:
    from millstream.tables._postgres import check

    return check(url)


_POSTGRES: Backend[Tables] = Backend(_open_postgres, _check_postgres)

TABLES: Family[Tables] = Family(
    "tables",
    {"sqlite": Backend(_open_sqlite, _check_sqlite), "postgresql": _POSTGRES,
     "postgres": _POSTGRES},
    slashes=False,
    examples=("sqlite:///path/to/tables.db", "postgresql://user@host:port/database"),
)

#: the families by the configuration key that names their URL (``PlatformConfig.streams`` …)
FAMILIES: Mapping[str, Family[Any]] = {"streams": STREAMS, "files": FILES, "tables": TABLES}
