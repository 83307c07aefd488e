"""A record made readable for people: one decoding, shared by the console and the CLI.

A value is shown as pretty JSON when it is JSON (what pydantic payloads are), else as text
when it is UTF-8 without control characters, else as hex; a key or a header as text or hex
(never parsed). What is shown is bounded: past ``limit`` bytes (``MAX_PAYLOAD``, 64 KiB) only
the first ``limit`` bytes are shown, and ``Shown`` says the whole size. A value cut so is
shown as text or hex, never parsed: its JSON would be incomplete.

The console puts ``Shown.text`` into a ``<pre>`` as escaped text (``console/pages/_streams``,
``_exceptions``); ``millstream exceptions show`` prints ``fields(...)`` in its JSON.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Literal

from millstream.console._limits import MAX_PAYLOAD
from millstream.records import Record

__all__ = ["Kind", "Shown", "ShownRecord", "fields", "show", "show_record"]

Kind = Literal["json", "text", "hex", "none"]

_ALLOWED_CONTROLS = frozenset("\t\n\r")


@dataclass(frozen=True, slots=True)
class Shown:
    """Some bytes as shown to people.

    ``kind``: ``json`` (``text`` is the JSON pretty-printed, ``value`` what it parses to),
    ``text`` (UTF-8), ``hex`` (lowercase, two digits a byte) or ``none`` (no bytes at all: a
    tombstone's value, a record without a key; ``text`` is empty). ``size`` is the whole
    length in bytes; ``shown`` how many of them ``text`` shows (fewer when cut).
    """

    kind: Kind
    text: str
    size: int
    shown: int
    value: object = None

    @property
    def cut(self) -> bool:
        """True when ``text`` shows only the first ``shown`` of ``size`` bytes."""
        return self.shown < self.size

    def note(self) -> str:
        """What was cut, for people: ``""``, or ``showing the first 65,536 of 1,048,576
        bytes``."""
        if not self.cut:
            return ""
        return f"showing the first {self.shown:,} of {self.size:,} bytes"

    def as_dict(self) -> dict[str, object]:
        """For a JSON answer: ``kind``, ``text``, ``size``, ``shown``, ``cut`` and ``note``."""
        return {"kind": self.kind, "text": self.text, "size": self.size, "shown": self.shown,
                "cut": self.cut, "note": self.note()}


def _is_text(text: str) -> bool:
    if text.isprintable():
        return True
    return not any(unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROLS
                   for c in text)


def _utf8_head(data: bytes) -> str | None:
    """``data`` as UTF-8 text, where its last character may have been cut in two by a bound
    (that character is left out); None when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data" or exc.start < len(data) - 3:
            return None
        try:
            return data[:exc.start].decode("utf-8")
        except UnicodeDecodeError:
            return None


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _parse(text: str) -> tuple[bool, object]:
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def show(data: bytes | None, *, as_json: bool = True, limit: int = MAX_PAYLOAD) -> Shown:
    """``data`` for people: JSON (when ``as_json``), else text, else hex; at most ``limit``
    of its bytes shown.

    Pretty JSON (indent 2, non-ASCII kept) is used while it stays within twice ``limit``
    characters; a value whose indentation would take more (deep nesting) is shown as sent.
    """
    if data is None:
        return Shown("none", "", 0, 0)
    size = len(data)
    head = data if size <= limit else data[:limit]
    text = _utf8_head(head)
    if text is None or not _is_text(text):
        return Shown("hex", head.hex(), size, len(head))
    shown = len(text.encode("utf-8")) if size > limit else size
    if as_json and shown == size:
        ok, value = _parse(text)
        if ok:
            pretty = json.dumps(value, indent=2, ensure_ascii=False)
            return Shown("json", pretty if len(pretty) <= 2 * limit else text, size, size,
                         value)
    return Shown("text", text, size, shown)


@dataclass(frozen=True, slots=True)
class ShownRecord:
    """A record for people: where it is, when, and its key, value and headers shown."""

    stream: str
    partition: int
    offset: int
    timestamp: int
    key: Shown
    value: Shown
    headers: tuple[tuple[str, Shown], ...]

    def as_dict(self) -> dict[str, object]:
        """For a JSON answer: position, ``timestamp`` (ms), and each part's ``as_dict``."""
        return {"stream": self.stream, "partition": self.partition, "offset": self.offset,
                "timestamp": self.timestamp, "key": self.key.as_dict(),
                "value": self.value.as_dict(),
                "headers": [{"name": name, **shown.as_dict()} for name, shown in self.headers]}


def show_record(record: Record, *, limit: int = MAX_PAYLOAD) -> ShownRecord:
    """``record`` for people: its value as ``show`` does, its key and headers as text or
    hex, each bounded by ``limit``."""
    return ShownRecord(
        record.stream, record.partition, record.offset, record.timestamp,
        show(record.key, as_json=False, limit=limit), show(record.value, limit=limit),
        tuple((name, show(value, as_json=False, limit=limit))
              for name, value in record.headers))


def fields(name: str, data: bytes | None, *, as_json: bool = True,
           limit: int = MAX_PAYLOAD) -> dict[str, object]:
    """``data`` as fields of a JSON document (``millstream exceptions show``): ``name`` holds
    the JSON it is (the parsed value), else ``<name>_text`` the text, else ``<name>_hex`` the
    hex; when cut, also ``<name>_size`` (all its bytes) and ``<name>_shown`` (the bytes
    shown). Nothing for no data."""
    shown = show(data, as_json=as_json, limit=limit)
    if shown.kind == "none":
        return {}
    key = name if shown.kind == "json" else f"{name}_{shown.kind}"
    out: dict[str, object] = {key: shown.value if shown.kind == "json" else shown.text}
    if shown.cut:
        out.update({f"{name}_size": shown.size, f"{name}_shown": shown.shown})
    return out
