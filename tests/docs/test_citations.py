"""Every test the documentation cites exists: a cited file (``service/test_crash.py``,
relative to ``tests/``, to ``apps/video/tests/`` or to the repository) is there, and a cited
test (``file.py::test_name``, or ``::test_name`` after a file in the same sentence) is defined
in it — so a promise never points at a test that was renamed or removed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").rglob("*.md")])
ROOTS = (REPO, REPO / "tests", REPO / "apps" / "video" / "tests")
CITATION = re.compile(r"`((?:[\w./-]*/)?test_\w+\.py)?(?:::(test_\w+)(?:\[[^\]`]*\])?)?`")


def resolve(cited: str) -> Path | None:
    for root in ROOTS:
        if (root / cited).is_file():
            return root / cited
    return None


def citations(page: Path) -> list[tuple[str, str | None]]:
    """(file, test or None) pairs; ``::test`` takes the file last cited in its paragraph."""
    found = []
    for paragraph in re.split(r"\n\s*\n|\n(?=\|)", page.read_text()):
        last = None
        for path, test in CITATION.findall(paragraph):
            if path:
                last = path
            if not path and not test:
                continue
            if last is None:
                found.append(("(no file before it)", test))
                continue
            found.append((last, test or None))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_cited_test_exists(page: Path) -> None:
    missing = []
    own = set(re.findall(r"^```python\n# (\w+\.py)\n", page.read_text(), re.M))
    for cited, test in citations(page):
        if cited in own:  # a file the page itself writes (the quickstart's test_shop.py)
            continue
        path = resolve(cited)
        if path is None:
            missing.append(f"{cited}: no such test file")
        elif test and not re.search(rf"^\s*(?:async )?def {test}\(", path.read_text(), re.M):
            missing.append(f"{cited}::{test}: no such test")
    assert missing == [], f"{page.relative_to(REPO)} cites:\n" + "\n".join(sorted(set(missing)))


def test_citations_are_found_in_sentences_and_table_cells(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("| a | `service/test_x.py::test_one`, `::test_two` |\n"
                    "| b | `test_y.py` and `::test_three[kafka]` |\n")
    assert citations(page) == [("service/test_x.py", "test_one"), ("service/test_x.py", "test_two"),
                               ("test_y.py", None), ("test_y.py", "test_three")]
