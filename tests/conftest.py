"""Shared fixtures: every test gets its own MILLSTREAM_HOME, never the developer's."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("MILLSTREAM_HOME", str(home))
    for name in ("MILLSTREAM_STREAMS", "MILLSTREAM_FILES", "MILLSTREAM_TABLES",
                 "MILLSTREAM_CONFIG", "MILLSTREAM_FAULT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield home


def require_services() -> bool:
    """True when a test that cannot get its service must fail instead of skip (CI)."""
    return os.environ.get("MILLSTREAM_REQUIRE_SERVICES") == "1"
