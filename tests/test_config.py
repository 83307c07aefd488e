"""Configuration: URLs from arguments, environment, millstream.toml and defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

import millstream
from millstream.config import load_config
from millstream.streams._local import LocalStreams, parse_local_url


def test_defaults_live_under_millstream_home(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert config.home == tmp_path / ".millstream"
    assert config.streams == "local:"
    assert config.files == (tmp_path / ".millstream" / "files").as_uri()
    assert config.tables == f"sqlite:///{str(tmp_path).lstrip('/')}/.millstream/tables.db"
    assert dict(config.sources) == {"streams": "default", "files": "default",
                                    "tables": "default"}


def test_file_then_environment_then_arguments_win(tmp_path: Path) -> None:
    (tmp_path / "millstream.toml").write_text(
        '[platform]\nstreams = "local:/data/log"\ntables = "sqlite:///t.db"\n')
    env = {"MILLSTREAM_TABLES": "postgresql://db/x", "MILLSTREAM_HOME": str(tmp_path / "h")}
    config = load_config(environ=env, cwd=tmp_path)
    assert config.streams == "local:/data/log"
    assert config.sources["streams"] == str(tmp_path / "millstream.toml")
    assert (config.tables, config.sources["tables"]) == ("postgresql://db/x",
                                                         "$MILLSTREAM_TABLES")
    assert config.home == tmp_path / "h"
    assert load_config(environ=env, cwd=tmp_path, streams="local:/x").streams == "local:/x"


@pytest.mark.parametrize(("text", "message"), [
    ("[platform]\nstreams = 3\n", "platform.streams must be a non-empty URL string"),
    ("[platform]\nstream = 'local:'\n", "unknown key(s) stream"),
    ("[platform\n", "cannot read"),
])
def test_a_bad_config_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "millstream.toml").write_text(text)
    with pytest.raises(millstream.ConfigError) as info:
        load_config(environ={}, cwd=tmp_path)
    assert message in str(info.value) and "millstream.toml" in str(info.value)


def test_a_missing_config_file_named_by_the_environment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(millstream.ConfigError, match=r"nope\.toml"):
        load_config(environ={"MILLSTREAM_CONFIG": str(tmp_path / "nope.toml")}, cwd=tmp_path)


def test_local_urls(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert parse_local_url("local:", home)[0] == home / "streams.db"
    path, options = parse_local_url(f"local:{tmp_path}/d?durability=process&session_timeout_ms=9",
                                    home)
    assert path == tmp_path / "d" / "streams.db"
    assert (options.durability, options.session_timeout_ms) == ("process", 9)
    assert parse_local_url(f"local://{tmp_path}/e", home)[0] == tmp_path / "e" / "streams.db"


@pytest.mark.parametrize(("url", "message"), [
    ("local:?durability=fast", "durability='fast'"),
    ("local:?colour=blue", "unknown option 'colour'"),
    ("local:?busy_timeout_ms=-1", "busy_timeout_ms='-1' in 'local:?busy_timeout_ms=-1'"),
])
def test_bad_local_urls_are_named(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(millstream.ConfigError) as info:
        parse_local_url(url, tmp_path)
    assert message in str(info.value)


def test_an_unknown_scheme_lists_the_supported_ones() -> None:
    with pytest.raises(millstream.ConfigError, match=r"scheme 'nats'.*local:"):
        millstream.open_streams("nats://host:4222")


def test_open_streams_follows_the_environment(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_STREAMS", f"local:{tmp_path}/envlog")
    with millstream.open_streams() as streams:
        assert isinstance(streams, LocalStreams)
        assert streams.path == tmp_path / "envlog" / "streams.db"
        assert streams.path.exists()


def test_an_unwritable_home_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(millstream.ConfigError, match="MILLSTREAM_HOME"):
        millstream.open_streams(f"local:{blocker}/sub")


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "streams.db").write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(millstream.CorruptDataError, match=r"streams\.db"):
        millstream.open_streams(f"local:{tmp_path}/bad")
