"""The top-level command: help, global options and error handling."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest

from millstream.cli.main import cli
from tests.cli.conftest import Invoke

MILLSTREAM = Path(sys.executable).with_name("millstream")


def all_commands() -> list[list[str]]:
    """Every command path, e.g. ["streams", "create"]."""
    out: list[list[str]] = []

    def walk(group: click.Group, path: list[str]) -> None:
        for name, command in group.commands.items():
            out.append([*path, name])
            if isinstance(command, click.Group):
                walk(command, [*path, name])

    walk(cli, [])
    return out


def test_installed_command_help() -> None:
    result = subprocess.run([str(MILLSTREAM), "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: millstream [OPTIONS] COMMAND [ARGS]...")
    commands = result.stdout.split("Commands:")[1].split()
    for name in ("config", "demo", "doctor", "groups", "produce", "streams", "tail"):
        assert name in commands


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_a_summary_and_an_example(run: Invoke, path: list[str]) -> None:
    out = run(*path, "--help").stdout
    assert out.startswith(f"Usage: cli {' '.join(path)} ")
    summary = out.split("\n\n")[1].strip()
    assert summary.endswith("."), summary
    example = out.split("\n  Example:\n", 1)[1].split("\n\n")[0]
    assert "millstream " + " ".join(path) in example


def test_version(run: Invoke) -> None:
    assert run("--version").stdout == "millstream, version 0.1.0\n"


def test_streams_option_selects_the_backend(run: Invoke, tmp_path: Path) -> None:
    other = tmp_path / "other"
    run("--streams", f"local:{other}", "streams", "create", "elsewhere")
    assert (other / "streams.db").is_file()
    assert run("streams", "list").stdout == ""  # the default home has no streams
    assert "elsewhere" in run("--streams", f"local:{other}", "streams", "list").stdout


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nats://broker:4222", "error: streams URL 'nats://broker:4222' has scheme 'nats'; "
                               "supported: local:, kafka:"),
        ("local:?speed=fast", "error: unknown option 'speed' in 'local:?speed=fast'; known: "),
    ],
)
def test_bad_streams_url_is_one_red_line(run: Invoke, url: str, message: str) -> None:
    result = run("--streams", url, "streams", "list", code=1)
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(message)


def test_expected_errors_print_no_traceback_from_the_installed_command() -> None:
    result = subprocess.run([str(MILLSTREAM), "tail", "missing"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: stream 'missing' does not exist; create it first (`millstream streams create "
        "missing` or admin.create_stream('missing'))"
    ]
