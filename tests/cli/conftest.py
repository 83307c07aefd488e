"""Fixtures for the command-line tests: run `millstream` in-process against the real log."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import CliRunner, Result

import millstream
from millstream import Streams
from millstream.cli.main import cli

Invoke = Callable[..., Result]


@pytest.fixture
def run() -> Invoke:
    """``run(*args, input=..., code=0)``: invoke the CLI, check its exit code, re-raise bugs."""
    runner = CliRunner()

    def invoke(*args: str, input: str | bytes | None = None, code: int = 0) -> Result:
        result = runner.invoke(cli, list(args), input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            assert result.exc_info is not None
            raise result.exception.with_traceback(result.exc_info[2])
        assert result.exit_code == code, (
            f"exit code {result.exit_code}, expected {code}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        if code == 1:
            assert "Traceback" not in result.output
        return result

    return invoke


@pytest.fixture
def streams() -> Iterator[Streams]:
    """The same embedded log the CLI uses (this test's MILLSTREAM_HOME)."""
    with millstream.open_streams() as handle:
        yield handle
