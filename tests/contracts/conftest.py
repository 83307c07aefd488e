"""The contract suites run once per backend; a backend is a ``BackendUnderTest``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backends import BackendUnderTest, kafka_backend, local_backend

# The kafka param carries the `kafka` marker: the hooks in tests/support/platform_fixtures.py
# move it to the end of the run
# and its broker comes from the session fixture kafka_bootstrap (skipped without Java/jars).
BACKENDS = ["local", pytest.param("kafka", marks=pytest.mark.kafka)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    if request.param == "local":
        b = local_backend(tmp_path / "log")
    elif request.param == "kafka":
        b = kafka_backend(request.getfixturevalue("kafka_bootstrap"))
    else:  # pragma: no cover - added with each new backend
        raise AssertionError(request.param)
    yield b
    b.close()
