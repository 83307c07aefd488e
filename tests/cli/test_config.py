"""`millstream config show` and `millstream doctor`."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke
from tests.cli.parsing import row


def test_show_defaults_under_home(run: Invoke, _isolated_home: Path) -> None:
    out = run("config", "show").stdout
    home = str(_isolated_home)
    assert row(out, "MILLSTREAM_HOME") == ["MILLSTREAM_HOME", home,
                                           "environment ($MILLSTREAM_HOME)"]
    assert row(out, "streams") == ["streams", "local:", "default"]
    assert row(out, "files") == ["files", f"file://{home}/files", "default"]
    assert row(out, "tables") == ["tables", f"sqlite://{home}/tables.db", "default"]


def test_show_reflects_the_environment_and_names_the_variable(
    run: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILLSTREAM_STREAMS", "local:/srv/streams")
    out = run("config", "show").stdout
    assert row(out, "streams") == ["streams", "local:/srv/streams",
                                   "environment ($MILLSTREAM_STREAMS)"]
    assert row(out, "files")[2] == "default"


def test_show_the_streams_option_wins_over_the_environment(
    run: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MILLSTREAM_STREAMS", "local:/srv/streams")
    out = run("--streams", "local:/elsewhere", "config", "show").stdout
    assert row(out, "streams") == ["streams", "local:/elsewhere", "--streams option"]


def test_show_names_the_config_file(run: Invoke, tmp_path: Path) -> None:
    (tmp_path / "millstream.toml").write_text('[platform]\ntables = "sqlite:///data/t.db"\n')
    out = run("config", "show").stdout
    assert row(out, "tables") == ["tables", "sqlite:///data/t.db",
                                  f"file {tmp_path / 'millstream.toml'}"]


def test_show_with_a_broken_config_file_is_a_one_line_error(run: Invoke, tmp_path: Path) -> None:
    (tmp_path / "millstream.toml").write_text('[platform]\nstream = "local:"\n')
    result = run("config", "show", code=1)
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'millstream.toml'}: unknown key(s) stream in [platform]; "
        "known: streams, files, tables"
    ]


def test_doctor_on_a_fresh_home_is_all_ok(run: Invoke, _isolated_home: Path) -> None:
    result = run("doctor")
    out = result.stdout
    streams = row(out, "streams")
    assert streams[:3] == ["streams", "local:", "OK"]
    assert streams[3].startswith(f"database {_isolated_home / 'streams.db'} (")
    assert streams[3].endswith("), 0 stream(s)")
    assert row(out, "files")[2:] == [
        "OK", f"directory {_isolated_home / 'files'} will be created on first use"
    ]
    assert row(out, "tables")[2:] == [
        "OK", f"database {_isolated_home / 'tables.db'} will be created on first use"
    ]
    assert out.splitlines()[-1] == "all backends OK"


def test_doctor_fails_when_files_point_under_a_regular_file(
    run: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("MILLSTREAM_FILES", (blocker / "files").as_uri())
    out = run("doctor", code=1).stdout
    assert row(out, "files")[2:] == [
        "FAIL", f"cannot create {blocker / 'files'}: {blocker} is a file, not a directory — "
                "point MILLSTREAM_FILES at a directory"
    ]
    assert row(out, "streams")[2] == "OK"
    assert out.splitlines()[-1].startswith("1 check(s) failed (files)")


def test_doctor_checks_existing_directories_and_databases(
    run: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    db = tmp_path / "tables.db"
    sqlite3.connect(db).close()
    monkeypatch.setenv("MILLSTREAM_FILES", files.as_uri())
    monkeypatch.setenv("MILLSTREAM_TABLES", f"sqlite://{db}")
    out = run("doctor").stdout
    assert row(out, "files")[2:] == ["OK", f"directory {files} is writable"]
    assert row(out, "tables")[2:] == ["OK", f"database {db} (0 bytes) opens"]


def test_doctor_fails_on_a_tables_file_that_is_not_a_database(
    run: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "tables.db"
    db.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("MILLSTREAM_TABLES", f"sqlite://{db}")
    out = run("doctor", code=1).stdout
    status, detail = row(out, "tables")[2:]
    assert status == "FAIL"
    assert detail.startswith(f"sqlite3 cannot open {db} (file is not a database)")


def test_doctor_reports_a_bad_streams_url_as_a_failed_check(run: Invoke) -> None:
    out = run("--streams", "nats://broker:4222", "doctor", code=1).stdout
    status, detail = row(out, "streams")[2:]
    assert status == "FAIL"
    assert detail.startswith("streams URL 'nats://broker:4222' has scheme 'nats'")
