"""Payload codecs: how a service's values become record bytes and headers, and back.

Three codecs cover what services send:

* ``ModelCodec(Model)`` — a pydantic v2 model as JSON. Records carry three headers:
  ``content-type: application/json``, ``schema: <name>`` and ``schema-version: <n>``. The
  name and version come from the model's ``schema_name`` / ``schema_version`` class
  variables when it declares them (else the class name and 1).
* ``JsonCodec()`` — any JSON-serialisable value (dicts, lists, numbers); ``content-type:
  application/json`` and no schema. It reads and writes exactly what the standard library's
  ``json`` module does (``json.loads``; ``json.dumps`` without spaces, non-ASCII kept), in
  pydantic-core's JSON parser and serializer where those give the same result (~0.5 µs
  instead of ~3–4 µs for a 100-byte object): a value made only of dicts with ``str`` keys,
  lists, tuples, ``str``, ``int``, ``float``, ``bool`` and ``None`` is written by
  ``pydantic_core.to_json``, anything else by ``json.dumps`` (which refuses what is not JSON);
  a record ``pydantic_core.from_json`` refuses is read again by ``json.loads`` (a BOM, lone
  surrogates, very deep nesting), which decides.
* ``BytesCodec()`` — bytes pass through untouched; ``content-type: application/octet-stream``.

Schema evolution follows from JSON plus pydantic's defaults: a reader accepts a record from an
older or newer writer of the same schema name when the change is compatible — a field added
with a default (old records lack it: the default fills in), a field removed (new records lack
it: the reader's default fills in; fields the reader does not know are ignored). A record that
does not validate — a required field missing, a type changed, another schema's name, another
content type — raises ``DecodeError`` naming the schema, the versions and pydantic's reasons;
the service runtime sends it to the exceptions stream.

A public module: ``app.stream(name, payload)`` takes a payload type or a codec, and a script
encodes and decodes records with the same codec the services use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json

from millstream.errors import InvalidRequestError, MillstreamError
from millstream.records import Headers

__all__ = [
    "CONTENT_TYPE",
    "JSON",
    "OCTET_STREAM",
    "SCHEMA",
    "SCHEMA_VERSION",
    "BytesCodec",
    "Codec",
    "DecodeError",
    "JsonCodec",
    "ModelCodec",
    "codec_for",
    "header",
]

CONTENT_TYPE = "content-type"
SCHEMA = "schema"
SCHEMA_VERSION = "schema-version"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class DecodeError(MillstreamError):
    """A record's bytes or headers do not fit the reader's codec (never retried)."""


def header(headers: Headers, name: str) -> str | None:
    """The last value of header ``name`` as text, or None."""
    found: bytes | None = None
    for hname, hvalue in headers:
        if hname == name:
            found = hvalue
    return found.decode("utf-8", "replace") if found is not None else None


class Codec(Protocol[T]):
    """Turns values into record bytes plus headers, and back."""

    @property
    def description(self) -> str:
        """What the codec carries, for messages and the topology graph."""
        ...

    def encode(self, value: T) -> tuple[bytes | None, Headers]: ...

    def decode(self, data: bytes | None, headers: Headers) -> T: ...


def _check_content_type(headers: Headers, expected: str, reader: str) -> None:
    found = header(headers, CONTENT_TYPE)
    if found is not None and found.split(";")[0].strip() != expected:
        raise DecodeError(
            f"the record's content type is {found!r} but {reader} reads {expected!r}; "
            "the writer uses another codec for this stream"
        )


class BytesCodec:
    """Bytes in, bytes out; ``None`` stays ``None`` (a tombstone)."""

    description = "bytes"
    _headers: Headers = ((CONTENT_TYPE, OCTET_STREAM.encode()),)

    def encode(self, value: bytes | None) -> tuple[bytes | None, Headers]:
        if value is not None and not isinstance(value, bytes | bytearray | memoryview):
            raise InvalidRequestError(
                f"a bytes stream was given a {type(value).__name__}; pass bytes, or declare the "
                "stream with a pydantic model"
            )
        return (bytes(value) if value is not None else None), self._headers

    def decode(self, data: bytes | None, headers: Headers) -> bytes | None:
        return data


_LEAVES = frozenset({str, int, float, bool, type(None)})
_all_leaves = _LEAVES.issuperset
_all_str = frozenset({str}).issuperset
_DEEPEST_PLAIN = 64  # deeper values (or cycles) are left to json.dumps


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` holds only JSON's own types (dicts with ``str`` keys, lists, tuples,
    ``str``, ``int``, ``float``, ``bool``, ``None``; exact types, no subclasses): the values
    ``pydantic_core.to_json`` writes as ``json.dumps`` does."""
    kind = type(value)
    if kind is dict:
        if not _all_str(map(type, value)):
            return False
        if _all_leaves(map(type, value.values())):  # the common case, in C
            return True
        items: Any = value.values()
    elif kind is list or kind is tuple:
        if _all_leaves(map(type, value)):
            return True
        items = value
    else:
        return kind in _LEAVES
    if depth >= _DEEPEST_PLAIN:
        return False
    depth += 1
    return all(type(item) in _LEAVES or _plain(item, depth) for item in items)


def _dumps(value: Any) -> bytes:
    """``value`` as compact JSON, as ``json.dumps`` writes it; raises ``InvalidRequestError``
    for a value that is not JSON."""
    if _plain(value):
        try:
            return to_json(value)
        except ValueError:
            pass  # a str it cannot write (a lone surrogate): json.dumps says why
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(
            f"{type(value).__name__} value cannot be written as JSON: {exc}; declare the "
            "stream with a pydantic model or send bytes"
        ) from exc


class JsonCodec:
    """Any JSON value, without a schema."""

    description = "json"
    _headers: Headers = ((CONTENT_TYPE, JSON.encode()),)

    @property
    def headers(self) -> Headers:
        """The headers every record of this codec carries (one shared tuple)."""
        return self._headers

    #: ``value`` (not None) as JSON bytes, without the headers: the runtime's per-record path
    to_json = staticmethod(_dumps)

    def encode(self, value: Any) -> tuple[bytes | None, Headers]:
        if value is None:
            return None, self._headers
        return _dumps(value), self._headers

    def decode(self, data: bytes | None, headers: Headers) -> Any:
        if data is None:
            return None
        if headers and headers != self._headers:  # fast path: our own writer's headers
            _check_content_type(headers, JSON, "this JSON reader")
        try:
            return from_json(data)
        except ValueError:
            pass  # what the standard library reads differently, or refuses with its message
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise DecodeError(f"the record is not valid JSON: {exc}") from exc


class ModelCodec(Generic[M]):
    """A pydantic model as JSON, with its schema name and version in headers."""

    def __init__(self, model: type[M]) -> None:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise InvalidRequestError(f"{model!r} is not a pydantic model class")
        self.model = model
        self.schema_name: str = getattr(model, "schema_name", None) or model.__name__
        version = getattr(model, "schema_version", None) or 1
        if not isinstance(version, int) or version < 1:
            raise InvalidRequestError(
                f"{model.__name__}.schema_version={version!r} must be a positive integer"
            )
        self.schema_version: int = version
        self._headers: Headers = (
            (CONTENT_TYPE, JSON.encode()),
            (SCHEMA, self.schema_name.encode()),
            (SCHEMA_VERSION, str(version).encode()),
        )
        self._expected = self._headers[:2]  # content type and schema name; any version
        self._validate: Callable[[bytes], M] = model.__pydantic_validator__.validate_json

    @property
    def description(self) -> str:
        return f"{self.schema_name} v{self.schema_version}"

    @property
    def headers(self) -> Headers:
        """The headers every record of this codec carries (one shared tuple)."""
        return self._headers

    def encode(self, value: M) -> tuple[bytes | None, Headers]:
        if not isinstance(value, self.model):
            raise InvalidRequestError(
                f"expected a {self.model.__name__} for schema {self.schema_name!r}, got "
                f"{type(value).__name__}"
            )
        return value.__pydantic_serializer__.to_json(value), self._headers

    def decode(self, data: bytes | None, headers: Headers) -> M:
        if data is None:
            raise DecodeError(
                f"a tombstone (no value) cannot be read as {self.schema_name}; declare the "
                "stream's payload as Optional or bytes to receive deletions"
            )
        if headers and headers[:2] != self._expected:  # fast path: our own writer's headers
            _check_content_type(headers, JSON, f"schema {self.schema_name!r}")
            name = header(headers, SCHEMA)
            if name is not None and name != self.schema_name:
                raise DecodeError(
                    f"the record has schema {name!r} but this reader expects "
                    f"{self.schema_name!r}"
                )
        try:
            return self._validate(data)
        except ValidationError as exc:
            version = header(headers, SCHEMA_VERSION) if headers else None
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}" for e in exc.errors()
            )
            raise DecodeError(
                f"the record (schema {self.schema_name!r} version {version or '?'}) is not "
                f"compatible with this reader (version {self.schema_version}): {problems}"
            ) from exc


def codec_for(payload: Any) -> Codec[Any]:
    """The codec for a declared payload: a model class, ``bytes``, ``dict``/``Any``/``None``
    for JSON, or a codec instance as is."""
    if isinstance(payload, type) and issubclass(payload, BaseModel):
        return ModelCodec(payload)
    if payload is bytes:
        return BytesCodec()
    if payload in (dict, list, None, Any, object, "json"):
        return JsonCodec()
    if hasattr(payload, "encode") and hasattr(payload, "decode") and not isinstance(payload, type):
        return payload  # type: ignore[no-any-return]
    raise InvalidRequestError(
        f"payload type {payload!r} is not supported; use a pydantic model class, bytes, dict "
        "(JSON) or a codec object with encode() and decode()"
    )

