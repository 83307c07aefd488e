"""Tables as declared outputs: ``outputs=[app.table("videos", Video, key="video_id")]``.

A ``TableOutput`` names a table, the pydantic model of its rows, the field that keys them
and the stream that carries them (its changelog; the table's name unless said otherwise). A
service that lists it among its outputs emits rows as it emits any value — returned, or
``ctx.emit(videos, row)`` — and they go to the changelog stream, keyed by the row's key.
After each of the service's commits the runtime applies what the stream gained to the
table in batches, each in one table transaction with the stream offsets it reaches
(``millstream.tables._feed``): the table always equals its stream replayed up to the
offsets stored with it, exactly once, whatever crashes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from millstream._names import check_stream_name
from millstream.errors import InvalidRequestError
from millstream.tables._common import check_field, check_table_name

__all__ = ["TableOutput"]


@dataclass(frozen=True, slots=True)
class TableOutput:
    """A table a service writes: ``name``, its row ``model``, the ``key`` field (None: the
    record's key), the changelog ``stream`` and the fields to ``index``."""

    name: str
    model: type[BaseModel]
    key: str | None
    stream: str
    indexes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_table_name(self.name)
        check_stream_name(self.stream)
        if not (isinstance(self.model, type) and issubclass(self.model, BaseModel)):
            raise InvalidRequestError(
                f"table {self.name!r}: its rows must be a pydantic model class, not "
                f"{self.model!r}")
        if self.key is not None and self.key not in self.model.model_fields:
            raise InvalidRequestError(
                f"table {self.name!r}: key field {self.key!r} is not a field of "
                f"{self.model.__name__} (its fields: {', '.join(self.model.model_fields)})")
        for field in self.indexes:
            check_field(field)

    def record_key(self, row: Any, given: bytes | str | None = None,
                   fallback: bytes | None = None) -> bytes:
        """The key of the record that carries ``row``: its key field as UTF-8 text. A key
        ``given`` with it (``ctx.emit(..., key=)``) must be the same. A table keyed by the
        record key (``key=None``) takes ``given``, else ``fallback`` (the input record's).
        Either way it must be a usable table key — non-empty UTF-8 text without NUL — or the
        row is refused here (it goes to the exceptions stream) instead of being skipped by
        the table."""
        if not isinstance(row, self.model):
            raise InvalidRequestError(
                f"table {self.name!r} takes {self.model.__name__} rows, not "
                f"{type(row).__name__} {_short(row)}")
        if self.key is None:
            key = given if given is not None else fallback
            text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
            if not _usable(text):
                raise InvalidRequestError(
                    f"table {self.name!r} is keyed by the record key, and a "
                    f"{type(row).__name__} row came with key {key!r}; emit it with a key "
                    "(non-empty text without NUL): ctx.emit(..., key=...)")
            assert key is not None
            return key if isinstance(key, bytes) else key.encode()
        value = getattr(row, self.key)
        if type(value) is str and value and "\x00" not in value and given is None:
            return value.encode()  # the common key (it runs for every row): text, not given
        if value is None or value == "":
            raise InvalidRequestError(
                f"table {self.name!r}: a {type(row).__name__} row has no {self.key!r} "
                f"({value!r}); every row needs its key")
        # types whose text is their JSON value: the key reads as the row's field does
        if isinstance(value, bool) or not isinstance(value, str | int | UUID) \
                or not _usable(str(value)):
            raise InvalidRequestError(
                f"table {self.name!r}: a {type(row).__name__} row's {self.key} {value!r} "
                "cannot key a table row; keys are text without NUL characters, integers or "
                "UUIDs")
        key = str(value).encode()
        if given is not None and (given.encode() if isinstance(given, str) else given) != key:
            raise InvalidRequestError(
                f"a row of table {self.name!r} was emitted with key {given!r}, not its "
                f"{self.key} {key.decode()!r}")
        return key

    def check_row(self, data: bytes | None, key: bytes | None) -> None:
        """Refuse a row whose JSON holds a NUL character (``\\u0000``): PostgreSQL cannot
        store one in a document, and the table's batch would fail after the service's
        commit, every time it is retried — the table stuck, and the service with it."""
        if data is not None and b"\\u0000" in data and _NUL.search(data):
            shown = (key or b"").decode(errors="replace")
            raise InvalidRequestError(
                f"a row of table {self.name!r} (key {shown!r}) holds a NUL character "
                "(\\u0000) in its text, which a table cannot store (PostgreSQL refuses it); "
                "remove it from the row before emitting it")


_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash


def _usable(key: str | None) -> bool:
    # what a table accepts as a key (tables._common.check_key)
    return key is not None and key != "" and "\x00" not in key


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def table_output(name: str, model: type[BaseModel], *, key: str | None = None,
                 stream: str | None = None, indexes: Sequence[str] = ()) -> TableOutput:
    """Build the ``TableOutput`` ``App.table`` declares; see ``TableOutput``."""
    if isinstance(indexes, str):
        indexes = (indexes,)
    return TableOutput(name, model, key, stream or name, tuple(indexes))
