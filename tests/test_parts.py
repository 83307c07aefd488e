"""`make test` runs the suite in two parts at once (tests/support/parts.py): every test lands in
exactly one part, the Kafka part holds exactly the tests marked kafka, and the run fails when
either part fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.parts import NO_TESTS, exit_status, run

REPO = Path(__file__).resolve().parents[1]
#: a file with Kafka tests that are marked through a pytest.param and others that are not
SAMPLE = "tests/test_backends.py"


def _collect(*args: str) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                           "no:cacheprovider", *args, SAMPLE], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_every_test_is_in_exactly_one_part_and_the_kafka_part_is_the_kafka_marker() -> None:
    everything = _collect()
    kafka, other = _collect("--part=kafka"), _collect("--part=other")
    assert kafka == [f"{SAMPLE}::test_every_streams_scheme_opens_and_checks[kafka]"]
    assert sorted(kafka + other) == sorted(everything)
    assert len(everything) == len(set(everything)) == 12


def _script(tmp_path: Path, name: str, body: str) -> str:
    (tmp_path / f"test_{name}.py").write_text(body)
    return str(tmp_path / f"test_{name}.py")


def test_the_run_fails_when_one_part_fails_and_prints_each_parts_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passing = _script(tmp_path, "ok", "def test_ok():\n    assert 1 + 1 == 2\n")
    failing = _script(tmp_path, "bad", "def test_bad():\n    assert 1 + 1 == 3\n")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the sessions run here, in tmp_path
    args = ["-q", "-p", "no:cacheprovider", "-p", "tests.support.platform_fixtures"]
    # the Kafka part selects nothing here (no test is marked kafka): the other part decides
    assert run(["kafka", "other"], [*args, passing, failing], tmp_path / "logs", every=60) == 1
    assert "1 failed, 1 passed" in (tmp_path / "logs" / "other.log").read_text()
    assert "2 deselected" in (tmp_path / "logs" / "kafka.log").read_text()


def test_a_part_without_tests_is_no_failure_unless_no_part_had_any() -> None:
    assert exit_status([NO_TESTS, 0]) == 0
    assert exit_status([0, 0]) == 0
    assert exit_status([0, 1]) == 1
    assert exit_status([NO_TESTS, 2]) == 2
    assert exit_status([NO_TESTS, NO_TESTS]) == NO_TESTS
