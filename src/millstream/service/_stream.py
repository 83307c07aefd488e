"""A declared stream as a typed handle: ``orders = app.stream("orders", Order)``.

``Stream[T]`` names a stream and carries what it was declared with — the codec of its
payload ``T``, its partition count and retention — so a service's ``inputs``, ``outputs``,
``ctx.emit`` and a script's ``Writer.send`` all take the handle and the payload type is
written once. mypy sees ``T``: ``ctx.emit(orders, invoice)`` is a type error, and at run time
``check_value`` refuses the same mistake with the stream and both types named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from millstream.codecs import BytesCodec, Codec, ModelCodec
from millstream.errors import InvalidRequestError
from millstream.service._table_output import TableOutput
from millstream.streams._base import Retention

__all__ = ["Stream", "check_value", "payload_name", "stream_name"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stream(Generic[T]):
    """A stream an app declares: its name, payload codec, partitions and retention.

    Made by ``App.stream``; pass it wherever a stream is named. Two declarations of one name
    in an app give equal handles."""

    name: str
    codec: Codec[T]
    partitions: int
    retention: Retention | None = None

    @property
    def payload(self) -> str:
        """The payload's type, as messages name it (``Order``, ``bytes``, ``dict``)."""
        return payload_name(self.codec)

    def __str__(self) -> str:
        return self.name


def stream_name(stream: Stream[Any] | TableOutput | str) -> str:
    """The name of a stream given by handle or by name (a table's: its changelog stream)."""
    if isinstance(stream, Stream):
        return stream.name
    if isinstance(stream, TableOutput):
        return stream.stream
    return stream


def payload_name(codec: Codec[Any]) -> str:
    if isinstance(codec, ModelCodec):
        return codec.model.__name__
    if isinstance(codec, BytesCodec):
        return "bytes"
    return "dict" if codec.description == "json" else codec.description


def check_value(stream: Stream[Any], value: object, where: str) -> None:
    """Refuse ``value`` for ``stream`` when its codec cannot carry it; ``where`` says who
    was given it (``"ctx.emit"``, ``"Writer.send"``), for the message. A codec other than a
    model or bytes (JSON, one of the user's) checks its values when it encodes them."""
    codec = stream.codec
    if isinstance(codec, ModelCodec):
        fits = isinstance(value, codec.model)
    elif isinstance(codec, BytesCodec):
        fits = value is None or isinstance(value, bytes | bytearray | memoryview)
    else:
        return
    if not fits:
        raise InvalidRequestError(
            f"stream {stream.name!r} carries {stream.payload}, but {where} was given "
            f"{_a(type(value).__name__)}; send {_a(stream.payload)} to it, or declare "
            f"another stream for {type(value).__name__} values")


def _a(name: str) -> str:
    if name in ("bytes", "NoneType"):
        return "None" if name == "NoneType" else "bytes"
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
