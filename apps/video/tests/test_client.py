"""``videosite.client.upload`` (what ``millstream-video upload``, the demo and
``InProcessSite.upload`` use) against a real site: answers, refusals, a body over the
site's size limit, and URLs it cannot use."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.platform_fixtures import isolate

from videosite.client import UploadFailed, UploadRefused, upload
from videosite.inprocess import InProcessSite
from videosite.titles import BadTitle

LIMIT = 1_000_000


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessSite]:
    home = tmp_path_factory.mktemp("client-site")
    with pytest.MonkeyPatch.context() as env:
        isolate(env, home)
        env.setenv("VIDEOSITE_MAX_UPLOAD_BYTES", str(LIMIT))
        with InProcessSite(token="secret", services=()) as running:  # the web server only
            assert running.config.home == home / "home"
            yield running


def test_a_clip_is_accepted_and_a_bad_token_refused(site: InProcessSite,
                                                    clips: dict[str, Path]) -> None:
    assert site.url is not None
    video_id = upload(site.url, "secret", clips["tiny"], "tiny")
    assert len(video_id) == 16 and int(video_id, 16) >= 0
    with pytest.raises(UploadRefused) as refused:
        upload(site.url, "wrong", clips["tiny"], "tiny")
    assert refused.value.status == 401


def test_a_body_over_the_limit_is_refused_or_cut_off_with_the_reason(
        site: InProcessSite, tmp_path: Path) -> None:
    assert site.url is not None
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(8 * LIMIT))
    with pytest.raises((UploadRefused, UploadFailed)) as stopped:
        upload(site.url, "secret", big, "too big")
    if isinstance(stopped.value, UploadRefused):  # the 413 was read before the reset
        assert stopped.value.status == 413
    else:
        assert "VIDEOSITE_MAX_UPLOAD_BYTES" in str(stopped.value)
        assert "big.mp4" in str(stopped.value)


def test_a_title_the_site_refuses_is_refused_before_sending(site: InProcessSite,
                                                           clips: dict[str, Path]) -> None:
    assert site.url is not None
    forged = "t\r\n--x\r\nContent-Disposition: form-data; name=\"more\"\r\n\r\nv"
    before = [ref.url for ref in site.files.list("uploads/")]
    with pytest.raises(BadTitle, match=r"^the title holds U\+000D at character 2: "):
        upload(site.url, "secret", clips["tiny"], forged)
    assert [ref.url for ref in site.files.list("uploads/")] == before


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8000", "http://", ""])
def test_urls_it_cannot_use_are_refused_naming_them(url: str, clips: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="is not an http:// or https:// URL") as bad:
        upload(url, "secret", clips["tiny"], "tiny")
    assert repr(url) in str(bad.value)


def test_nothing_listening_is_an_upload_failure(clips: dict[str, Path]) -> None:
    with pytest.raises(UploadFailed, match=re.escape("cannot upload to http://127.0.0.1:9")):
        upload("http://127.0.0.1:9", "secret", clips["tiny"], "tiny", timeout=5)
