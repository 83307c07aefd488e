"""`millstream files`: ls, put, get, rm, stat (run through a group like the real one)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from millstream.cli.files import files_group
from millstream.cli.main import _Group  # the real error handling: one red line, exit 1
from tests.cli.parsing import row, rows

Invoke = Callable[..., Result]


@click.group(cls=_Group)
def cli() -> None:
    """The top-level group with only `files` in it."""


cli.add_command(files_group)


@pytest.fixture
def run() -> Invoke:
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> Result:
        result = runner.invoke(cli, ["files", *args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == code, (result.stdout, result.stderr)
        return result

    return invoke


def test_put_ls_stat_get_rm(run: Invoke, tmp_path: Path, _isolated_home: Path) -> None:
    src = tmp_path / "clip.mp4"
    data = b"\x00\x01fake mp4" * 1000
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    root = (_isolated_home / "files").absolute()

    out = run("put", str(src), "videos/clip.mp4").stdout
    assert out == (f"stored videos/clip.mp4 (10.0 kB): {root.as_uri()}/videos/clip.mp4 "
                   f"sha256={digest}\n")
    run("put", str(src), "other/x.bin", "--content-type", "application/x-test")

    listing = run("ls").stdout
    assert rows(listing)[0] == ["Name", "Size", "SHA-256", "Content type"]
    assert row(listing, "videos/clip.mp4") == ["videos/clip.mp4", "10000", digest, "video/mp4"]
    assert row(listing, "other/x.bin") == ["other/x.bin", "10000", digest, "application/x-test"]
    assert [r[0] for r in rows(run("ls", "videos/").stdout)[1:]] == ["videos/clip.mp4"]

    assert run("stat", "videos/clip.mp4").stdout.splitlines() == [
        f"url           {root.as_uri()}/videos/clip.mp4", "size          10000",
        f"sha256        {digest}", "content-type  video/mp4"]

    dest = tmp_path / "copy.mp4"
    out = run("get", "videos/clip.mp4", str(dest)).stdout
    assert dest.read_bytes() == data
    assert out == f"wrote {dest} (10.0 kB, sha256={digest} verified)\n"
    assert run("get", "videos/clip.mp4", "-").stdout_bytes == data

    assert run("rm", "videos/clip.mp4").stdout == "removed videos/clip.mp4 (10.0 kB)\n"
    assert [r[0] for r in rows(run("ls").stdout)[1:]] == ["other/x.bin"]


def test_missing_objects_and_bad_names_are_one_line_errors(run: Invoke) -> None:
    for args in (("stat", "nope"), ("get", "nope", "-"), ("rm", "nope")):
        result = run(*args, code=1)
        assert result.stderr.startswith("error: no object 'nope' in the file store file://")
        assert len(result.stderr.splitlines()) == 1
    result = run("stat", "../etc/passwd", code=1)
    assert result.stderr.startswith("error: object name '../etc/passwd' must be")


def test_ls_on_an_empty_store_says_how_to_put(run: Invoke) -> None:
    result = run("ls")
    assert result.stdout == ""
    assert "millstream files put PATH NAME" in result.stderr


def test_files_option_picks_another_store(run: Invoke, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    src = tmp_path / "a.txt"
    src.write_text("hello")
    run("--files", other.as_uri(), "put", str(src), "a.txt")
    assert (other / "a.txt").read_text() == "hello"
    assert run("ls").stdout == ""
