"""The complete examples in the guides run as written: a page's python blocks that start with
``# NAME.py`` are written to a directory of their own and its ``test_*.py`` files are run with
pytest there. Every such test file in the docs is run by this module or by
test_quickstart.py (which runs the quickstart's and the testing guide's Kafka test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.test_quickstart import environment, files

REPO = Path(__file__).resolve().parents[2]
#: pages whose examples run here: page -> the files its blocks write
EXAMPLES = {"docs/guides/tables.md": {"totals.py", "test_totals.py"}}
#: test files run by test_quickstart.py instead
ELSEWHERE = {"docs/quickstart.md": {"test_shop.py"},
             "docs/guides/testing.md": {"test_shop_on_kafka.py"}}


def test_every_example_test_in_the_docs_is_run() -> None:
    found = {}
    for page in sorted((REPO / "docs").rglob("*.md")):
        tests = {name for name in files(page) if name.startswith("test_")}
        if tests:
            found[str(page.relative_to(REPO))] = tests
    expected = {page: {n for n in names if n.startswith("test_")}
                for page, names in {**EXAMPLES, **ELSEWHERE}.items()}
    assert found == expected


@pytest.mark.parametrize("page", sorted(EXAMPLES))
def test_the_pages_example_passes_as_written(page: str, tmp_path: Path) -> None:
    written = files(REPO / page)
    assert set(written) == EXAMPLES[page]
    for name, body in written.items():
        (tmp_path / name).write_text(body)
    tests = sorted(name for name in written if name.startswith("test_"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *tests], cwd=tmp_path, env=environment(None),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout
