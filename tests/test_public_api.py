"""The public API is pinned: adding or removing a name from ``millstream.__all__`` is a
deliberate change, made here and in ``src/millstream/__init__.py`` together."""

from __future__ import annotations

import importlib

import pytest

import millstream
from millstream import errors

PUBLIC_API = [
    "Admin",
    "AlreadyExistsError",
    "BatchHandle",
    "ClosedError",
    "ConfigError",
    "Consumer",
    "CorruptDataError",
    "DeliveryError",
    "FencedError",
    "GroupInfo",
    "Headers",
    "InvalidRequestError",
    "MillstreamError",
    "MissingDependencyError",
    "NotFoundError",
    "OffsetOutOfRangeError",
    "OperationTimeoutError",
    "PartitionInfo",
    "PlatformConfig",
    "Position",
    "Producer",
    "Record",
    "RecordTooLargeError",
    "Retention",
    "SendHandle",
    "StreamInfo",
    "StreamPartition",
    "Streams",
    "UnavailableError",
    "UnknownStreamError",
    "__version__",
    "load_config",
    "open_streams",
]


def test_all_is_pinned() -> None:
    assert sorted(millstream.__all__) == PUBLIC_API
    assert len(set(millstream.__all__)) == len(millstream.__all__), "duplicate names in __all__"


@pytest.mark.parametrize("name", PUBLIC_API)
def test_every_public_name_is_importable(name: str) -> None:
    module = importlib.import_module("millstream")
    assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec(f"from millstream import {name}", namespace)
    assert namespace[name] is getattr(module, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from millstream import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC_API


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_a_millstream_error(name: str) -> None:
    cls = getattr(errors, name)
    assert isinstance(cls, type)
    assert issubclass(cls, errors.MillstreamError)
    assert issubclass(cls, Exception)
    assert getattr(millstream, name) is cls, f"{name} is not re-exported by millstream"


@pytest.mark.parametrize(
    ("cls", "builtin", "retriable"),
    [
        (errors.ConfigError, ValueError, False),
        (errors.NotFoundError, LookupError, False),
        (errors.UnavailableError, ConnectionError, True),
        (errors.OperationTimeoutError, TimeoutError, True),
    ],
)
def test_error_categories_match_builtins(
    cls: type[errors.MillstreamError], builtin: type[Exception], retriable: bool
) -> None:
    assert issubclass(cls, errors.MillstreamError)
    assert issubclass(cls, builtin)
    assert cls.retriable is retriable
    with pytest.raises(builtin):
        raise cls("caught as the builtin it resembles")
    with pytest.raises(errors.MillstreamError):
        raise cls("caught as a millstream error")


def test_root_is_not_retriable_by_default() -> None:
    assert errors.MillstreamError.retriable is False
    assert errors.MillstreamError("x").retriable is False
