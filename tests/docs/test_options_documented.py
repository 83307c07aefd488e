"""Every argument a user can give ``App``, ``@app.service`` and ``RetryPolicy`` is named in
the guide that explains it — as `` `name` `` or as an argument of a call written in code,
``RetryPolicy(attempts, backoff, …)`` — so a new option cannot ship undocumented."""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from millstream.service import App, RetryPolicy

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "guides"


def parameters(function: Callable[..., Any]) -> list[str]:
    return [name for name, p in inspect.signature(function).parameters.items()
            if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]


@pytest.mark.parametrize(("what", "names", "guide"), [
    ("App()", parameters(App.__init__), "services.md"),
    ("@app.service()", parameters(App.service), "services.md"),
    ("RetryPolicy()", [f.name for f in dataclasses.fields(RetryPolicy)], "failures.md"),
])
def test_every_option_is_named_in_its_guide(what: str, names: list[str], guide: str) -> None:
    spans = re.findall(r"`([^`\n]+)`", (GUIDES / guide).read_text())
    missing = [name for name in names if name not in spans
               and not any(re.search(rf"[(,]\s*{name}\b", span) for span in spans)]
    assert missing == [], f"docs/guides/{guide} does not name these options of {what}: {missing}"
