"""A service's outputs between handler and producer: what handlers returned, encoded as rows.

``Outputs`` holds the rows of the records handled since the last send (one per output
record: the stream actually written, key, value, headers, and the input record it came
from). ``Encoder`` turns what a handler returned — nothing, one value, a list, ``Emit``
objects, what it passed to ``ctx.emit`` — into those rows: the key defaults to the input's
(a table output's row is keyed by its key field), a shadow writes its own streams, and a
stream several services write gets a writer header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from types import GeneratorType
from typing import Any

from millstream._wellknown import WRITER_HEADER
from millstream.codecs import Codec, JsonCodec, ModelCodec
from millstream.errors import InvalidRequestError
from millstream.records import Headers, Record
from millstream.service._app import App, Emit, ServiceSpec
from millstream.service._shadow import shadow_stream
from millstream.service._stream import check_value, stream_name
from millstream.service._table_output import TableOutput
from millstream.streams._base import RecordBatch

__all__ = ["EncodeError", "Encoder", "Outputs", "Row"]

#: (stream written, key, value, headers, the input record it came from — or its index in the
#: batch being handled, ``Outputs.batch``; ``Outputs.record`` gives the record either way)
Row = tuple[str, bytes | None, bytes | None, Headers, Record | int]


class EncodeError(Exception):
    """An output could not be encoded: a bug in the handler, not retried."""


class Outputs:
    """The rows of the records handled since the last ``take()``, in order."""

    __slots__ = ("batch", "rows")

    def __init__(self) -> None:
        self.rows: list[Row] = []
        #: the poll batch being handled, which rows naming their input by index refer to (its
        #: rows are all sent before the next batch is handled)
        self.batch: RecordBatch | Sequence[Record] = ()

    def record(self, source: Record | int) -> Record:
        """The input record of a row (its last field)."""
        return self.batch[source] if type(source) is int else source  # type: ignore[return-value]

    def take(self) -> list[Row]:
        """Hand the rows over and start a new list (the producer may keep the old one)."""
        rows, self.rows = self.rows, []
        return rows


class _NoModel:
    """Matches no handler result: the service has no single model output."""


class Encoder:
    """Encodes one service's handler results into output rows."""

    def __init__(self, app: App, spec: ServiceSpec, shadow: str | None) -> None:
        self._spec = spec
        #: declared output name -> the stream actually written (shadow streams for a shadow)
        self.streams = {s: s if shadow is None else shadow_stream(s, shadow)
                        for s in spec.outputs}
        self._codecs: dict[str, Codec[Any]] = {s: app.streams[s].codec for s in spec.outputs}
        self._declared = {s: app.streams[s] for s in spec.outputs}
        # outputs other services of the app write too: each record names its writer, so
        # `diff` (and readers) can tell whose it is
        writer = (WRITER_HEADER, spec.name.encode())
        self._stamps = {s: writer for s in spec.outputs if len(app.writers_of(s)) > 1}
        #: the tables among the outputs: their records carry their rows' keys, checked
        self._row_keys = {t.stream: t for t in spec.tables}
        sole = self._codecs[spec.outputs[0]] if len(spec.outputs) == 1 else None
        #: The common shapes, one output of a pydantic model or of JSON: a handler result of
        #: exactly type ``model`` (the model; ``dict`` for JSON) is one value for ``sole``,
        #: written with ``sole_headers``, serialized by ``to_json``.
        fast: ModelCodec[Any] | JsonCodec | None = (
            sole if isinstance(sole, ModelCodec) or type(sole) is JsonCodec else None)
        self.model: type = (sole.model if isinstance(sole, ModelCodec)
                            else dict if fast is not None else _NoModel)
        #: the sole output is a table: ``sole_key(row, data, record_key)`` gives the key of
        #: a row (its key field, or the record key) after checking it and its JSON ``data``
        table = self._row_keys.get(spec.outputs[0]) if sole is not None else None
        self.sole_key: Callable[[Any, bytes, bytes | None], bytes] | None = (
            None if table is None else self._keyer(table))
        self.sole = self.streams[spec.outputs[0]] if sole is not None else ""
        stamp = self._stamps.get(spec.outputs[0]) if sole is not None else None
        self.sole_headers: Headers = (
            () if fast is None
            else fast.headers if stamp is None else (*fast.headers, stamp))
        self.to_json: Callable[[Any], bytes] = (
            fast.model.__pydantic_serializer__.to_json if isinstance(fast, ModelCodec)
            else fast.to_json if fast is not None else bytes)

    def error(self, declared: str, value: Any, exc: Exception) -> EncodeError:
        """Why ``value`` could not be encoded for output ``declared``, as its ``__cause__``
        (the error recorded): the stream and both types when the value is of the wrong type,
        else the codec's own error."""
        cause: Exception = exc
        try:
            check_value(self._declared[declared], value, f"service {self._spec.name!r}")
        except InvalidRequestError as wrong:
            cause = wrong
        error = EncodeError(str(cause))
        error.__cause__ = cause
        return error

    @staticmethod
    def _keyer(table: TableOutput) -> Callable[[Any, bytes, bytes | None], bytes]:
        def key(row: Any, data: bytes, record_key: bytes | None) -> bytes:
            try:
                key = table.record_key(row, None, record_key)
                table.check_row(data, key)
            except InvalidRequestError as exc:
                raise EncodeError(str(exc)) from exc
            return key
        return key

    def collect(self, rows: list[Row], record: Record, result: Any,
                emitted: list[Emit] | None) -> None:
        """Append the rows for ``result`` (and ``emitted`` before it); nothing is appended if
        one of them cannot be encoded (``EncodeError``)."""
        items: Iterable[Any]
        if result is None:
            items = ()
        elif isinstance(result, Emit):  # before tuple: Emit is a NamedTuple
            items = (result,)
        elif isinstance(result, list | tuple | GeneratorType):
            items = result
        else:
            items = (result,)
        rows += [self.encode(record, item) for item in (*(emitted or ()), *items)]

    def encode(self, record: Record, item: Any) -> Row:
        """One output row: ``item`` is an ``Emit`` or a value for the only output."""
        spec = self._spec
        if isinstance(item, Emit):
            declared, value, key = stream_name(item.stream), item.value, item.key
            if declared not in self.streams:
                raise InvalidRequestError(
                    f"service {spec.name!r} emitted to {declared!r}, which is not one of "
                    f"its outputs ({', '.join(spec.outputs) or 'none'}); declare it"
                )
        else:
            if len(spec.outputs) != 1:
                raise InvalidRequestError(
                    f"service {spec.name!r} returned a {type(item).__name__} but has "
                    f"{len(spec.outputs)} outputs; return Emit(stream, value) instead"
                )
            declared, value, key = spec.outputs[0], item, None
        table = self._row_keys.get(declared)
        if table is not None:
            try:
                key = table.record_key(value, key, record.key)
            except InvalidRequestError as exc:
                raise EncodeError(str(exc)) from exc
        if key is None:
            key = record.key
        elif isinstance(key, str):
            key = key.encode()
        try:
            data, headers = self._codecs[declared].encode(value)
        except Exception as exc:
            raise self.error(declared, value, exc)  # noqa: B904 (its cause is set)
        if table is not None:
            try:
                table.check_row(data, key)
            except InvalidRequestError as exc:
                raise EncodeError(str(exc)) from exc
        stamp = self._stamps.get(declared)
        if stamp is not None:
            headers = (*headers, stamp)
        return self.streams[declared], key, data, headers, record
