"""What every table backend shares: checking names, keys and fields, turning documents into
JSON text and back, and ``TableBase``, which gives the typed read API on top of a backend's
few raw methods."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from millstream.errors import InvalidRequestError
from millstream.records import StreamPartition
from millstream.tables._base import Document, Export, Scalar, TableInfo, Writes

__all__ = [
    "MAX_TABLE_NAME",
    "TableBase",
    "check_field",
    "check_key",
    "check_table_name",
    "decode",
    "encode",
    "json_type",
    "prefix_end",
]

M = TypeVar("M", bound=BaseModel)
MAX_TABLE_NAME = 48
_NAME = re.compile(r"[A-Za-z0-9._-]+")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_table_name(name: object) -> str:
    """Return ``name`` if it is a legal table name, else raise ``InvalidRequestError``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_TABLE_NAME \
            or name in (".", ".."):
        raise InvalidRequestError(
            f"table name {name!r} is not valid; use 1 to {MAX_TABLE_NAME} letters, digits, "
            "'.', '_' or '-'"
        )
    return name


def check_key(key: object) -> str:
    if not isinstance(key, str) or not key or "\x00" in key:
        raise InvalidRequestError(
            f"table key {key!r} is not valid; keys are non-empty strings without NUL characters"
        )
    return key


def check_field(name: object) -> str:
    if not isinstance(name, str) or not _FIELD.fullmatch(name):
        raise InvalidRequestError(
            f"field {name!r} cannot be queried or indexed; use a top-level field whose name is "
            "an identifier ([A-Za-z_][A-Za-z0-9_]*)"
        )
    return name


def json_type(value: object) -> str:
    """The JSON type of a query value: ``null``, ``true``, ``false``, ``number`` or ``text``."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidRequestError(f"cannot query for {value!r}: not a JSON number")
        return "number"
    if isinstance(value, str):
        return "text"
    raise InvalidRequestError(
        f"query values are JSON scalars (str, int, float, bool, None), got "
        f"{type(value).__name__}"
    )


def encode(doc: Document) -> str:
    """A document as compact JSON text of an object; ``InvalidRequestError`` if it is not one."""
    if isinstance(doc, BaseModel):
        text = doc.model_dump_json()
        if not text.startswith("{"):
            raise InvalidRequestError(
                f"a {type(doc).__name__} serialises to {text[:40]!r}, not a JSON object")
        return text
    if not isinstance(doc, Mapping):
        raise InvalidRequestError(
            f"documents are pydantic models or mappings, got {type(doc).__name__}")
    try:
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequestError(f"document is not JSON-serialisable: {exc}") from exc


@overload
def decode(text: str, model: None) -> dict[str, Any]: ...


@overload
def decode(text: str, model: type[M]) -> M: ...


def decode(text: str, model: type[M] | None) -> dict[str, Any] | M:
    if model is None:
        value: dict[str, Any] = json.loads(text)
        return value
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidRequestError(
            f"a stored document does not validate as {model.__name__}: {exc}") from exc


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (by code
    point, which is UTF-8 byte order), or None when there is none."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if last == 0xD800:
            last = 0xE000  # surrogates have no UTF-8 form
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None


def check_limit(limit: int | None) -> int | None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise InvalidRequestError(f"limit={limit!r} must be an integer ≥ 0 or None")
    return limit


class TableBase(ABC):
    """The typed read and single-write API over a backend's raw JSON-text methods."""

    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r}>"

    # -- what a backend provides ----------------------------------------------------------------

    @abstractmethod
    def _get_json(self, key: str) -> str | None: ...

    @abstractmethod
    def _scan_json(self, lower: str, inclusive: bool, upper: str | None, limit: int | None
                   ) -> list[tuple[str, str]]:
        """Rows with ``lower`` < key (≤ when ``inclusive``) and key < ``upper`` (no bound when
        None), by key, at most ``limit``."""

    @abstractmethod
    def _query_json(self, where: Sequence[tuple[str, str, Scalar]], limit: int | None
                    ) -> list[tuple[str, str]]:
        """Rows matching every ``(field, json_type, value)``, by key."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Writes]: ...

    @abstractmethod
    def export(self) -> AbstractContextManager[Export]: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def offsets(self) -> dict[StreamPartition, int]: ...

    @abstractmethod
    def info(self) -> TableInfo: ...

    # -- the typed API --------------------------------------------------------------------------

    @overload
    def get(self, key: str) -> dict[str, Any] | None: ...

    @overload
    def get(self, key: str, model: type[M]) -> M | None: ...

    def get(self, key: str, model: type[M] | None = None) -> dict[str, Any] | M | None:
        text = self._get_json(check_key(key))
        return None if text is None else decode(text, model)

    def put(self, key: str, doc: Document) -> None:
        with self.transaction() as tx:
            tx.put(key, doc)

    def delete(self, key: str) -> bool:
        with self.transaction() as tx:
            return tx.delete(key)

    @overload
    def scan(self, prefix: str = "", *, after: str | None = None,
             limit: int | None = None) -> list[tuple[str, dict[str, Any]]]: ...

    @overload
    def scan(self, prefix: str = "", *, after: str | None = None, limit: int | None = None,
             model: type[M]) -> list[tuple[str, M]]: ...

    def scan(self, prefix: str = "", *, after: str | None = None, limit: int | None = None,
             model: type[M] | None = None) -> list[tuple[str, Any]]:
        if not isinstance(prefix, str):
            raise InvalidRequestError(f"prefix must be a string, got {type(prefix).__name__}")
        check_limit(limit)
        if after is not None and not isinstance(after, str):
            raise InvalidRequestError(f"after must be a string, got {type(after).__name__}")
        if after is not None and after >= prefix:
            rows = self._scan_json(after, False, prefix_end(prefix), limit)
        else:
            rows = self._scan_json(prefix, True, prefix_end(prefix), limit)
        return [(k, decode(t, model)) for k, t in rows]

    @overload
    def query(self, where: Mapping[str, Scalar], *,
              limit: int | None = None) -> list[tuple[str, dict[str, Any]]]: ...

    @overload
    def query(self, where: Mapping[str, Scalar], *, limit: int | None = None,
              model: type[M]) -> list[tuple[str, M]]: ...

    def query(self, where: Mapping[str, Scalar], *, limit: int | None = None,
              model: type[M] | None = None) -> list[tuple[str, Any]]:
        if not isinstance(where, Mapping) or not where:
            raise InvalidRequestError("query needs at least one field=value condition")
        check_limit(limit)
        conditions = [(check_field(f), json_type(v), v) for f, v in where.items()]
        return [(k, decode(t, model)) for k, t in self._query_json(conditions, limit)]
