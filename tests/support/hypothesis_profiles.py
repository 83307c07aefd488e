"""The suite's hypothesis profiles, chosen by ``MILLSTREAM_HYPOTHESIS_PROFILE`` (a pytest
plugin, registered by the root conftest.py).

- ``ci`` (the default): derandomized. Every run draws the same examples, so a test that
  passes keeps passing and the suite is repeatable.
- ``reliability`` (``make reliability``): fresh random examples on every run, five times as
  many. The seed is ``--hypothesis-seed`` if given, else drawn here; it is printed in the
  header, and after a failing run with the exact command that draws the same examples again.

Tests that draw with hypothesis carry the marker ``property`` (added here to every
``@given`` test; a test that runs a state machine or builds its ``@given`` inside marks
itself), so ``-m property`` selects them all.
"""

from __future__ import annotations

import os
import secrets
import shlex
import sys

import pytest
from hypothesis import is_hypothesis_test, settings

__all__ = ["PROFILES", "PROFILE_VAR", "active_seed", "rerun_command"]

PROFILE_VAR = "MILLSTREAM_HYPOTHESIS_PROFILE"
PROFILES = ("ci", "reliability")

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("reliability", max_examples=300, deadline=None, derandomize=False,
                          print_blob=True)


def _chosen() -> str:
    name = os.environ.get(PROFILE_VAR, "ci")
    if name not in PROFILES:
        raise pytest.UsageError(f"{PROFILE_VAR}={name!r} is not a hypothesis profile of this "
                                f"suite; use one of: {', '.join(PROFILES)}")
    return name


def active_seed(config: pytest.Config) -> str | None:
    seed = config.getoption("hypothesis_seed", None)
    return None if seed is None else str(seed)


def rerun_command(config: pytest.Config) -> str:
    """The command that runs the same tests drawing the same examples."""
    args = [a for a in config.invocation_params.args if not a.startswith("--hypothesis-seed")]
    return (f"{PROFILE_VAR}=reliability {shlex.quote(sys.executable)} -m pytest "
            + " ".join(shlex.quote(a) for a in args)
            + f" --hypothesis-seed={active_seed(config)}")


@pytest.hookimpl(tryfirst=True)  # before hypothesis's own plugin reads --hypothesis-seed
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "property: draws examples with hypothesis")
    name = _chosen()
    settings.load_profile(name)
    if name == "reliability" and active_seed(config) is None:
        config.option.hypothesis_seed = str(secrets.randbelow(2**32))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_hypothesis_test(getattr(item, "obj", None)):
            item.add_marker(pytest.mark.property)


def pytest_report_header(config: pytest.Config) -> str:
    name = settings.get_current_profile_name()
    if name != "reliability":
        return f"hypothesis: profile {name!r}, derandomized (the same examples on every run)"
    return (f"hypothesis: profile 'reliability', fresh random examples, seed "
            f"{active_seed(config)}; to draw the same again: {rerun_command(config)}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    if settings.get_current_profile_name() == "reliability" and exitstatus != 0:
        terminalreporter.write_line(
            f"hypothesis seed {active_seed(config)}; rerun the same examples with: "
            f"{rerun_command(config)}", red=True)
