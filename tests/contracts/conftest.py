"""The contract suites run once per backend; a backend is a ``BackendUnderTest``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backends import BackendUnderTest, local_backend

BACKENDS = ["local"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    if request.param == "local":
        b = local_backend(tmp_path / "log")
    else:  # pragma: no cover - added with each new backend
        raise AssertionError(request.param)
    yield b
    b.close()
