"""Turning a batch of stream records into a table's changes: the rule every feed applies.

A record upserts the document at its key (the record key as UTF-8 unless a key function
says otherwise); a tombstone (value ``None``) deletes it; within a batch only each key's
last record counts. A record with no usable key, a value that is not a JSON object, or one
that does not validate as the table's model is skipped and logged — a replay skips it the
same way, so the table still equals its stream replayed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from millstream.records import Headers, Record

__all__ = ["Changes", "KeyFunction", "changes_of"]

log = logging.getLogger(__name__)

KeyFunction = Callable[[Record], str | None]


@dataclass(frozen=True, slots=True)
class Changes:
    """What one batch does to a table: documents to write and keys to delete."""

    puts: list[tuple[str, str]]
    deletes: list[str]
    skipped: int


def _document(table: str, record: Record, model: type[BaseModel] | None,
              written_by: Headers) -> str | None:
    value = record.value
    assert value is not None
    try:
        if model is not None and not (written_by
                                      and record.headers[:len(written_by)] == written_by):
            return model.model_validate_json(value).model_dump_json()
        if type(from_json(value, allow_inf_nan=False, cache_strings=False)) is dict:
            return value.decode()
        why = "not a JSON object"
    except (UnicodeDecodeError, ValueError, ValidationError) as exc:
        why = " ".join(str(exc).split())[:300]
    log.warning("table %s: skipping the record at %s: %s", table, record.position, why)
    return None


def changes_of(table: str, records: Sequence[Record], *, key: KeyFunction | None = None,
               model: type[BaseModel] | None = None, written_by: Headers = ()) -> Changes:
    """The changes ``records`` (in stream order) make to ``table``; see the module docstring.

    A record whose headers begin with ``written_by`` (the headers ``model``'s codec writes)
    is that model serialised by the runtime: it is only checked to be a JSON object, not
    validated again."""
    # it runs for every record a table is fed: the common record (keyed by its record key,
    # a JSON object the runtime wrote or no model to validate) is handled inline
    puts: dict[str, str] = {}
    deletes: dict[str, None] = {}
    skipped = 0
    stamp = len(written_by)
    for r in records:
        if key is None:
            raw = r[4]
            k = raw.decode("utf-8", "replace") if raw is not None else None
        else:
            k = key(r)
        if not k or "\x00" in k:
            log.warning("table %s: skipping the record at %s: no usable key", table,
                        r.position)
            skipped += 1
            continue
        value = r[5]
        if value is None:
            deletes[k] = None
            puts.pop(k, None)
            continue
        doc: str | None = None
        if model is None or (stamp and r[6][:stamp] == written_by):
            try:  # only checked to be a JSON object
                if type(from_json(value, allow_inf_nan=False, cache_strings=False)) is dict:
                    doc = value.decode()
            except ValueError:
                pass
        if doc is None:  # to validate, or to say why it is skipped
            doc = _document(table, r, model, written_by)
            if doc is None:
                skipped += 1
                continue
        puts[k] = doc
        if deletes:
            deletes.pop(k, None)
    return Changes(list(puts.items()), list(deletes), skipped)
