"""The fixtures every test directory shares (registered by the root conftest.py).

Every test gets its own MILLSTREAM_HOME and working directory, never the developer's.
``require_services``/``_no_service`` decide between skipping and failing when a service
cannot be started; the Kafka fixtures and collection hooks are described below.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.kafka_cluster import (
    BackgroundStart,
    KafkaCluster,
    KafkaStartError,
    KafkaUnavailable,
    find_runtime,
    reap_stale,
)

#: the variables that point the platform elsewhere: unset in tests unless a test sets them
PLATFORM_VARS = ("MILLSTREAM_STREAMS", "MILLSTREAM_FILES", "MILLSTREAM_TABLES",
                 "MILLSTREAM_CONFIG", "MILLSTREAM_FAULT")


def isolate(patch: pytest.MonkeyPatch, folder: Path) -> Path:
    """Work in ``folder`` on the embedded default, with ``folder/home`` as MILLSTREAM_HOME;
    returns the home. Module-scoped fixtures call it themselves: they are set up before the
    per-test home below."""
    home = folder / "home"
    patch.setenv("MILLSTREAM_HOME", str(home))
    for name in PLATFORM_VARS:
        patch.delenv(name, raising=False)
    patch.chdir(folder)
    return home


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield isolate(monkeypatch, tmp_path)


def require_services() -> bool:
    """True when a test that cannot get its service must fail instead of skip (CI)."""
    return os.environ.get("MILLSTREAM_REQUIRE_SERVICES") == "1"


def _no_service(reason: str) -> NoReturn:
    """Skip the test for a missing service — or fail it under MILLSTREAM_REQUIRE_SERVICES=1."""
    if require_services():
        pytest.fail(f"{reason} [MILLSTREAM_REQUIRE_SERVICES=1: not skipping]", pytrace=False)
    pytest.skip(reason)


#: the fixtures that start or reach a service outside the process: Kafka, an S3 server,
#: PostgreSQL, a browser
SERVICE_FIXTURES = frozenset({"kafka_bootstrap", "kafka_cluster3", "s3_url", "pg_server",
                              "pg_url", "browser"})


def services_off() -> bool:
    """True under MILLSTREAM_NO_SERVICES=1 (``make test-newest``): tests that need a service
    skip instead of starting it."""
    return os.environ.get("MILLSTREAM_NO_SERVICES") == "1"


def skip_if_services_off(what: str) -> None:
    """In a service fixture: skip under MILLSTREAM_NO_SERVICES=1 (for tests that ask for the
    fixture while running, e.g. a backend parametrized by name)."""
    if services_off():
        pytest.skip(f"MILLSTREAM_NO_SERVICES=1: no {what}")

# --- Kafka (tests/support/kafka_cluster.py) -------------------------------------------------------
# Marker `kafka`: the test needs a broker, fixture `kafka_bootstrap` (one node, started in the
# background as soon as collection shows a test wants it, so it boots while the embedded tests
# run). Marker `kafka_cluster`: fixture `kafka_cluster3` (three nodes, for fault tests; implies
# `kafka`). Both run at the end, three-node tests last: that fixture stops the single node
# first, so two clusters never share the machine. MILLSTREAM_KAFKA_BOOTSTRAP=host:port uses a
# broker you started yourself (python -m tests.support.kafka_cluster start ...) instead.
_kafka_single: BackgroundStart | None = None
#: the SIGTERM grace of a cluster the session is done with: its data is thrown away, so
#: nothing is gained by waiting out a controlled shutdown (3 nodes took 10-20 s)
DONE_GRACE_S = 1.0


def _kafka_dir(nodes: int) -> Path:
    """A fresh base dir in $TMPDIR; dirs of finished sessions go (their logs stay until then)."""
    root = Path(tempfile.gettempdir())
    reap_stale(root)
    return Path(tempfile.mkdtemp(prefix=f"millstream-kafka-{nodes}n-", dir=root))


def _start_kafka_single() -> BackgroundStart:
    return BackgroundStart(
        lambda runtime: KafkaCluster(_kafka_dir(1), 1, runtime=runtime, owner=os.getpid()),
    ).begin()


# --- parts (``--part``): `make test` runs the Kafka tests and the others as two sessions at once
# (tests/support/parts.py), each on a core of its own. The Kafka part holds every test marked
# `kafka` (so the brokers live in that session only), the other part everything else.
PARTS = ("kafka", "other")
#: tests of the `other` part that reached kafka_bootstrap without the `kafka` marker
_unforeseen_kafka: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--part", choices=PARTS, default=None,
                     help="run only the tests marked kafka (kafka) or only the others (other); "
                          "make test runs both parts at once")


def _select_part(config: pytest.Config, items: list[pytest.Item]) -> None:
    part = config.getoption("part", None)
    if part is None:
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        kafka = item.get_closest_marker("kafka") is not None
        (keep if kafka == (part == "kafka") else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)  # before -m deselects, so the markers added here count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the Kafka fixtures they use; move Kafka tests to the end, 3-node last;
    keep only the tests of ``--part`` when given."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if services_off() and SERVICE_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.skip(reason="MILLSTREAM_NO_SERVICES=1: needs "
                                             + ", ".join(sorted(SERVICE_FIXTURES & set(names)))))
        if "kafka_cluster3" in names and item.get_closest_marker("kafka_cluster") is None:
            item.add_marker(pytest.mark.kafka_cluster)
        needs = "kafka_bootstrap" in names or item.get_closest_marker("kafka_cluster")
        if needs and item.get_closest_marker("kafka") is None:
            item.add_marker(pytest.mark.kafka)
    items.sort(key=lambda item: (item.get_closest_marker("kafka") is not None)
               + (item.get_closest_marker("kafka_cluster") is not None))
    _select_part(config, items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the single Kafka node in the background if a selected test needs it."""
    global _kafka_single
    if session.config.option.collectonly or os.environ.get("MILLSTREAM_KAFKA_BOOTSTRAP"):
        return
    if any(item.get_closest_marker("kafka") and not item.get_closest_marker("kafka_cluster")
           for item in session.items):
        _kafka_single = _start_kafka_single()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _kafka_single is not None:
        _kafka_single.stop(grace=DONE_GRACE_S)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name a test that started a Kafka broker without the `kafka` marker: in `make test` it
    ran in the other part, with a second broker beside the Kafka part's."""
    if _unforeseen_kafka:
        terminalreporter.write_line(
            f"a Kafka broker was started for {_unforeseen_kafka[0]}, which is not marked "
            "kafka: mark it (pytest.mark.kafka, or a pytest.param with marks=) so that "
            "make test runs it in the Kafka part")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """``host:port`` of a ready single-node Kafka; skips (or fails, in CI) without one."""
    global _kafka_single
    external = os.environ.get("MILLSTREAM_KAFKA_BOOTSTRAP")
    if external:
        return external
    if _kafka_single is None:  # not foreseen at collection (e.g. reached by getfixturevalue)
        _unforeseen_kafka.append(os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0])
        _kafka_single = _start_kafka_single()
    try:
        return _kafka_single.result(timeout=240).bootstrap  # < pytest-timeout (300 s)
    except (KafkaUnavailable, KafkaStartError) as exc:
        _no_service(f"no Kafka broker: {exc}")


@pytest.fixture(scope="session")
def kafka_cluster3() -> Iterator[KafkaCluster]:
    """Three Kafka nodes (replication factor 3, min ISR 2) with kill_node/restart_node."""
    if _kafka_single is not None:
        _kafka_single.stop(grace=DONE_GRACE_S)  # one cluster at a time: 3 JVMs fill 2 cores
    try:
        runtime = find_runtime(fetch=True)
        cluster = KafkaCluster(_kafka_dir(3), 3, runtime=runtime, owner=os.getpid())
        cluster.start()
    except (KafkaUnavailable, KafkaStartError) as exc:
        _no_service(f"no 3-node Kafka cluster: {exc}")
    try:
        cluster.wait_ready(180)
    except KafkaStartError as exc:
        cluster.stop()
        _no_service(f"no 3-node Kafka cluster: {exc}")
    yield cluster
    cluster.stop(grace=DONE_GRACE_S)
