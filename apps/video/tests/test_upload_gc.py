"""An upload's original is pinned from before it is stored until its record is acknowledged:
``millstream files gc --older-than 0s`` run in between keeps it.

The site runs in a child process held at the named fault point ``videosite.upload.before_send``
(the original stored and probed, its record not sent) while the test runs gc on the same store
and streams."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import millstream
from millstream.files import FileRef, open_files
from millstream.files._gc import run_gc
from millstream.streams._reading import read_to_end

_CHILD = """
import json, sys
from fastapi.testclient import TestClient
from millstream.files import open_files
from millstream.tables import open_tables
from videosite.web import create_app

files_url, streams_url, clip = sys.argv[1:4]
with open_files(files_url) as files, open_tables() as tables:
    site = create_app(streams_url, files, tables, token="secret")
    with TestClient(site) as client, open(clip, "rb") as f:
        res = client.post("/api/videos", files={"file": ("clip.mp4", f, "video/mp4")},
                          data={"title": "kept"}, headers={"Authorization": "Bearer secret"})
print(json.dumps({"status": res.status_code, "body": res.json()}))
"""


def test_gc_run_while_an_upload_waits_to_be_sent_keeps_its_original(
        tmp_path: Path, clips: dict[str, Path]) -> None:
    files_url = (tmp_path / "files").as_uri()
    streams_url = f"local:{tmp_path / 'log'}"
    store = open_files(files_url)
    with millstream.open_streams(streams_url) as streams:
        streams.admin().create_stream("uploads", 1)
        release = tmp_path / "release"
        env = dict(os.environ, MILLSTREAM_HOME=str(tmp_path / "home"),
                   MILLSTREAM_FAULT_PAUSE="videosite.upload.before_send",
                   MILLSTREAM_FAULT_PAUSE_FILE=str(release))
        env.pop("MILLSTREAM_FAULT", None)
        env.pop("VIDEOSITE_API_TOKEN", None)
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, files_url, streams_url, str(clips["landscape"])],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not Path(f"{release}.reached").exists():
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the upload never reached the fault point"
                time.sleep(0.05)
            [original] = list(store.list("uploads/"))
            report = run_gc(store, streams, None, older_than_s=0)
            assert report.deleted == []
            assert report.kept["pins"] == 1
            release.touch()
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, err
        answer = json.loads(out.strip().splitlines()[-1])
        assert answer["status"] == 202, answer
        [record] = list(read_to_end(streams, "uploads"))
        source = FileRef.model_validate(json.loads(record.value or b"")["source"])
        assert source == original == store.stat(original.url)
        assert list(store.list("millstream.gc/pins/")) == []
        # once the record is there, gc keeps the original for it
        assert run_gc(store, streams, None, older_than_s=0).deleted == []
