"""The public API is pinned: every public package and module's ``__all__`` is written out here.

Adding or removing a public name is a deliberate change, made in its package's ``__init__``
and here together. A public package exports its names from its ``__init__`` and holds nothing
else; each name is defined inside the package that exports it (the top level gathers from the
whole of millstream); internal modules are private (``_name``), and ``millstream.cli`` is the
command line, not an API.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import types

import pytest

import millstream
from millstream import errors

#: every public package and module of millstream, and its ``__all__``, sorted
PUBLIC_API: dict[str, list[str]] = {
    "millstream": [
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
        "RecordBatch",
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
        "open_files",
        "open_streams",
        "open_tables",
    ],
    "millstream.cli": [],
    "millstream.codecs": [
        "BytesCodec",
        "CONTENT_TYPE",
        "Codec",
        "DecodeError",
        "JSON",
        "JsonCodec",
        "ModelCodec",
        "OCTET_STREAM",
        "SCHEMA",
        "SCHEMA_VERSION",
        "codec_for",
        "header",
    ],
    "millstream.config": ["KEYS", "PlatformConfig", "load_config"],
    "millstream.console": [
        "ConsoleContext",
        "DEFAULT_KEEP",
        "MetricsHistory",
        "STATIC",
        "ServedConsole",
        "TEMPLATES",
        "build_app",
        "build_server",
        "create_app",
    ],
    "millstream.errors": [
        "AlreadyExistsError",
        "ClosedError",
        "ConfigError",
        "CorruptDataError",
        "DeliveryError",
        "FencedError",
        "InvalidRequestError",
        "MillstreamError",
        "MissingDependencyError",
        "NotFoundError",
        "OffsetOutOfRangeError",
        "OperationTimeoutError",
        "RecordTooLargeError",
        "UnavailableError",
        "UnknownStreamError",
    ],
    "millstream.faults": ["FAULT_EXIT_CODE", "fault_point"],
    "millstream.files": [
        "ClaimCheck",
        "FileRef",
        "FileStore",
        "FileWriter",
        "GcReport",
        "Source",
        "check_files",
        "claim_checked",
        "collect_garbage",
        "find_references",
        "open_files",
        "pinned",
        "run_gc",
    ],
    "millstream.observe": [
        "CONTENT_TYPE",
        "Edge",
        "Health",
        "InstanceStatus",
        "InstanceView",
        "MetricsServer",
        "MetricsTable",
        "MetricsView",
        "Node",
        "ServiceView",
        "Snapshot",
        "Topology",
        "prometheus_text",
        "to_svg",
        "to_text",
        "topology",
        "topology_from_metrics",
    ],
    "millstream.operations": [
        "Child",
        "Difference",
        "Replayed",
        "StreamDiff",
        "Supervisor",
        "diff_outputs",
        "list_exceptions",
        "load_app",
        "promote",
        "replay",
        "replayed_ids",
        "run_command",
    ],
    "millstream.records": ["Header", "Headers", "Position", "Record", "StreamPartition",
                           "record_size"],
    "millstream.runtime": [
        "CheckpointStore",
        "Clock",
        "Counters",
        "EXCEPTIONS_STREAM",
        "ExceptionRecord",
        "METRICS_STREAM",
        "MetricsRecord",
        "ProcessingSummary",
        "ProcessingTotal",
        "RecordedHistogram",
        "SYSTEM_CLOCK",
        "ServiceError",
        "ServiceRunner",
        "ServiceThreads",
        "Statistics",
        "SystemClock",
        "ensure_app_streams",
        "parse_exception",
    ],
    "millstream.service": ["Aggregate", "App", "AsyncWriter", "Collect", "Context", "Count",
                           "Counted", "Emit", "Hopping", "Join", "LateJoinRecord", "LateRecord",
                           "Latest", "Lifespan",
                           "Max", "Mean", "Min", "Operator", "Reducer", "ReportedFailure",
                           "RetryPolicy", "ServiceSpec", "Session", "ShardOutput", "Sliding",
                           "Stream", "Sum", "TableOutput", "Tumbling", "UnmatchedJoinRecord",
                           "WindowRow",
                           "WindowedService", "Writer",
                           "shadow_group", "shadow_stream", "shadow_table"],
    "millstream.streams": [
        "Admin",
        "BatchHandle",
        "Consumer",
        "GroupInfo",
        "MemberInfo",
        "OffsetReset",
        "PartitionInfo",
        "PartitionLag",
        "Producer",
        "RebalanceCallback",
        "RecordBatch",
        "Retention",
        "SendHandle",
        "StreamInfo",
        "Streams",
        "SupportsTransactions",
        "TransactionalProducer",
        "check_streams",
        "open_streams",
    ],
    "millstream.tables": [
        "Document",
        "Export",
        "Materializer",
        "MaterializerStatistics",
        "Scalar",
        "SnapshotInfo",
        "Table",
        "TableInfo",
        "Tables",
        "Writes",
        "check_tables",
        "open_tables",
        "rebuild",
        "restore_snapshot",
        "write_snapshot",
    ],
    "millstream.testing": ["DEFAULT_EPOCH", "ManualClock", "RunningService", "TestPlatform"],
}

def _public_modules(package: types.ModuleType) -> list[str]:
    """``package`` and every module under it whose dotted name has no ``_`` part, except the
    command line's modules (``millstream.cli`` itself is listed: it exports nothing)."""
    found = [package.__name__]
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name.rsplit(".", 1)[1].startswith("_") or info.name.startswith("millstream.cli."):
            continue
        module = importlib.import_module(info.name)
        found += _public_modules(module) if info.ispkg else [info.name]
    return found


def test_every_public_package_and_module_is_pinned() -> None:
    assert sorted(_public_modules(millstream)) == sorted(PUBLIC_API)


@pytest.mark.parametrize("module", PUBLIC_API)
def test_all_is_pinned(module: str) -> None:
    exported = importlib.import_module(module).__all__
    assert sorted(exported) == PUBLIC_API[module], (
        f"{module}.__all__ changed: update PUBLIC_API in tests/test_public_api.py with it")
    assert len(set(exported)) == len(exported), f"duplicate names in {module}.__all__"


@pytest.mark.parametrize("module", PUBLIC_API)
def test_every_name_in_all_is_importable(module: str) -> None:
    namespace: dict[str, object] = {}
    exported = importlib.import_module(module)
    for name in exported.__all__:
        exec(f"from {module} import {name}", namespace)
        assert namespace[name] is getattr(exported, name)


@pytest.mark.parametrize("module", PUBLIC_API)
def test_star_import_gives_exactly_all(module: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module} import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC_API[module]


@pytest.mark.parametrize("module", PUBLIC_API)
def test_every_public_class_and_function_is_defined_inside_its_package(module: str) -> None:
    """A name has one home: ``millstream.service`` does not hand out the runtime's classes.
    (Constants and type aliases carry no module to check.)"""
    exported = importlib.import_module(module)
    inside = (module, module + ".") if hasattr(exported, "__path__") else (module,)
    outside = {}
    for name in exported.__all__:
        value = getattr(exported, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            home = value.__module__
            if not (home == module or home.startswith(inside[-1])):
                outside[name] = home
    assert outside == {}


@pytest.mark.parametrize("package", [m for m in PUBLIC_API
                                     if hasattr(importlib.import_module(m), "__path__")])
def test_a_package_holds_its_public_names_and_nothing_else(package: str) -> None:
    """Helpers of a package live in its private modules, not in its ``__init__``: every name
    of its namespace without a ``_`` is in ``__all__`` or is one of its modules."""
    namespace = importlib.import_module(package)
    extra = [name for name, value in vars(namespace).items()
             if not name.startswith("_") and name not in namespace.__all__
             and name != "annotations" and not isinstance(value, types.ModuleType)]
    assert extra == []


@pytest.mark.parametrize("module", PUBLIC_API)
def test_each_public_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """No import cycle that only an earlier import of another package hides."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")


def test_importing_millstream_loads_neither_the_file_store_nor_tables_until_used() -> None:
    """A program that only uses streams does not pay for pydantic and the file store
    (``open_files``/``open_tables`` are imported at first use)."""
    code = ("import sys, millstream\n"
            "print(sorted(m for m in ('millstream.files', 'millstream.tables', 'pydantic')"
            " if m in sys.modules))\n"
            "millstream.open_files, millstream.open_tables\n"
            "print(sorted(m for m in ('millstream.files', 'millstream.tables')"
            " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["[]", "['millstream.files', 'millstream.tables']"]


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
