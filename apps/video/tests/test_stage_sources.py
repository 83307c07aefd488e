"""A video stage checks its original again after reading it, before storing what it made.

``local_path`` hands a stage the store's own file, checked when handed out; the stage then
reads it for as long as the work takes (minutes for a transcode). Each stage runs here in a
child process held at the named fault point ``videosite.stage.before_store`` (its outputs
made, none stored) while the test changes the original in place; released, the stage must
fail with ``CorruptDataError`` naming the object and store nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from millstream.files import open_files
from videosite.media.samples import make_clip
from videosite.models import Upload

_CHILD = """
import json, sys
from millstream.files import open_files
from videosite import stages
from videosite.media import MediaLimits
from videosite.models import Upload

url, stage, upload = sys.argv[1], sys.argv[2], Upload.model_validate_json(sys.argv[3])
run = {"probe": stages.run_probe, "thumbnails": stages.run_thumbnails,
       "transcode": stages.run_transcode}[stage]
with open_files(url) as files:
    try:
        result = run(upload, files, MediaLimits())
        print(json.dumps({"ok": result.ok, "error": None}))
    except Exception as exc:
        print(json.dumps({"ok": None, "error": f"{type(exc).__name__}: {exc}"}))
"""


@pytest.mark.parametrize("stage", ["probe", "thumbnails", "transcode"])
def test_an_original_changed_in_place_while_a_stage_reads_it_fails_the_stage(
    tmp_path: Path, stage: str
) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, 160, 120, 2.0)
    url = f"file://{tmp_path / 'files'}"
    with open_files(url) as files:
        ref = files.put("uploads/v1.mp4", clip, content_type="video/mp4")
        upload = Upload(video_id="v1", title="t", source=ref, uploaded_at=0.0,
                        size=clip.stat().st_size)
        release = tmp_path / "release"
        env = dict(os.environ, MILLSTREAM_FAULT_PAUSE="videosite.stage.before_store",
                   MILLSTREAM_FAULT_PAUSE_FILE=str(release))
        env.pop("MILLSTREAM_FAULT", None)
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, stage, upload.model_dump_json()],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not Path(f"{release}.reached").exists():
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "the stage never reached the fault point"
                time.sleep(0.05)
            # the outputs are made; flip one byte of the original, in place
            original = files.local_path(ref)
            with original.open("r+b") as f:
                f.seek(1000)
                byte = f.read(1)
                f.seek(1000)
                f.write(bytes([byte[0] ^ 0xFF]))
            release.touch()
            out, err = child.communicate(timeout=120)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.returncode == 0, err
        found = json.loads(out.strip().splitlines()[-1])
        assert found["ok"] is None
        assert found["error"].startswith("CorruptDataError: ")
        assert "uploads/v1.mp4" in found["error"]
        # nothing made from the changed original was stored
        assert [files.name_of(r) for r in files.list()] == ["uploads/v1.mp4"]
