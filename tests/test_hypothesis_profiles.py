"""The hypothesis profile switch: the suite draws the same examples on every run, while
``MILLSTREAM_HYPOTHESIS_PROFILE=reliability`` (what ``make reliability`` sets) draws fresh
ones from a printed seed, and that seed draws the same examples again. Each case runs pytest
in a subprocess on a small property test that records the examples it was given."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.children import REPO

PROPERTY_TEST = '''
import json, os
from hypothesis import given, settings, strategies as st

@given(st.integers())
@settings(database=None)
def test_records_examples(x):
    with open(os.environ["EXAMPLES_FILE"], "a") as f:
        f.write(json.dumps(x) + "\\n")
    assert os.environ.get("FAIL_ON") is None or x < int(os.environ["FAIL_ON"])

def test_active_profile():
    s = settings.default
    with open(os.environ["PROFILE_FILE"], "w") as f:
        json.dump([settings.get_current_profile_name(), s.derandomize, s.max_examples], f)
'''


Run = tuple[subprocess.CompletedProcess[str], list[int], list[object]]


def run_pytest(tmp_path: Path, *args: str, profile: str | None = None,
               fail_on: int | None = None) -> Run:
    test = tmp_path / "test_property.py"
    test.write_text(PROPERTY_TEST)
    examples, profile_file = tmp_path / "examples.txt", tmp_path / "profile.json"
    examples.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MILLSTREAM_HYPOTHESIS_PROFILE"}
    env.update(PYTHONPATH=str(REPO), EXAMPLES_FILE=str(examples), PROFILE_FILE=str(profile_file))
    if profile is not None:
        env["MILLSTREAM_HYPOTHESIS_PROFILE"] = profile
    if fail_on is not None:
        env["FAIL_ON"] = str(fail_on)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.hypothesis_profiles",
         "-p", "no:cacheprovider", str(test), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    drawn = [int(line) for line in examples.read_text().split()] if examples.exists() else []
    active = json.loads(profile_file.read_text()) if profile_file.exists() else []
    return done, drawn, active


def test_the_normal_suite_is_derandomized_whatever_the_seed(tmp_path: Path) -> None:
    done, first, active = run_pytest(tmp_path, "--hypothesis-seed=1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert active == ["ci", True, 60]
    assert "hypothesis: profile 'ci', derandomized" in done.stdout
    _, second, _ = run_pytest(tmp_path, "--hypothesis-seed=2")
    assert len(first) == 60 and first == second


def test_the_reliability_profile_draws_by_seed(tmp_path: Path) -> None:
    done, one, active = run_pytest(tmp_path, "--hypothesis-seed=1", profile="reliability")
    assert done.returncode == 0, done.stdout + done.stderr
    assert active == ["reliability", False, 300]
    assert "profile 'reliability', fresh random examples, seed 1;" in done.stdout
    _, one_again, _ = run_pytest(tmp_path, "--hypothesis-seed=1", profile="reliability")
    _, two, _ = run_pytest(tmp_path, "--hypothesis-seed=2", profile="reliability")
    assert len(one) == 300
    assert one == one_again
    assert one != two


def test_without_a_seed_one_is_drawn_printed_and_draws_the_same_again(tmp_path: Path) -> None:
    done, drawn, _ = run_pytest(tmp_path, profile="reliability")
    match = re.search(r"seed (\d+); to draw the same again: (.*)", done.stdout)
    assert match, done.stdout
    seed, command = match.groups()
    assert command.startswith("MILLSTREAM_HYPOTHESIS_PROFILE=reliability ")
    assert command.endswith(f" --hypothesis-seed={seed}")
    _, again, _ = run_pytest(tmp_path, f"--hypothesis-seed={seed}", profile="reliability")
    assert drawn == again


def test_a_failing_run_ends_with_the_command_that_reruns_its_seed(tmp_path: Path) -> None:
    done, _, _ = run_pytest(tmp_path, "--hypothesis-seed=7", profile="reliability",
                            fail_on=1000)
    assert done.returncode == 1
    lines = [line for line in done.stdout.splitlines() if line.startswith("hypothesis seed")]
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith("hypothesis seed 7; rerun the same examples with: "
                               "MILLSTREAM_HYPOTHESIS_PROFILE=reliability ")
    assert lines[0].endswith(" --hypothesis-seed=7")


@pytest.mark.parametrize("name", ["fast", ""])
def test_an_unknown_profile_name_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    done, drawn, _ = run_pytest(tmp_path, profile=name)
    assert done.returncode == 4  # pytest's usage error
    assert f"MILLSTREAM_HYPOTHESIS_PROFILE={name!r} is not a hypothesis profile" in done.stderr
    assert drawn == []
