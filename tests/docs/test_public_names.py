"""The user documentation (README.md, docs/ outside docs/internals/) imports and names only
public modules and names: no ``millstream._x`` or ``millstream.x._y`` module, and every name
imported ``from millstream…`` is in that module's ``__all__`` — so a page never teaches what
the next internal move breaks."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted(p for p in [REPO / "README.md", *(REPO / "docs").rglob("*.md")]
               if "internals" not in p.parts)
IMPORT = re.compile(r"from (millstream[\w.]*) import ([\w, ()\n]+?)(?:$|`|#)", re.M)
DOTTED = re.compile(r"\bmillstream(?:\.\w+)+")
#: documented features whose function has no public name yet (one line each: page, name)
NOT_YET_PUBLIC: set[tuple[str, str]] = set()


def rel(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_the_page_names_only_public_modules_and_exported_names(page: Path) -> None:
    text = page.read_text()
    wrong = []
    for module, names in IMPORT.findall(text):
        if any(part.startswith("_") for part in module.split(".")):
            wrong.append(f"from {module} imports from a private module")
            continue
        exported = getattr(importlib.import_module(module), "__all__", ())
        for name in re.findall(r"\w+", names):
            if name not in exported:
                wrong.append(f"from {module} import {name}: not in {module}.__all__")
    for dotted in DOTTED.findall(text):
        if (any(part.startswith("_") for part in dotted.split(".")[1:])
                and (rel(page), dotted) not in NOT_YET_PUBLIC):
            wrong.append(f"{dotted} is private")
    assert wrong == [], f"{rel(page)}:\n" + "\n".join(wrong)
