"""The Studio (web/app/src/pages/Studio.tsx) in a real browser against the real platform: a new creator uploads a
clip with tus from the page, the page is reloaded mid-upload and the upload resumes from the bytes the server
stored (not from zero), the processing timeline reaches ready, an edit keeps markup as text, the QoE numbers show,
and a delete through the confirmation dialog removes the video (web/app/e2e/studio.mjs drives Debian's Chromium
with playwright-core). Needs the app built and its packages installed: `make bootstrap` does both.

    .venv/bin/python -m pytest -q -s tests/e2e/test_web_studio.py
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from common.settings import REPO_ROOT
from tests.e2e.conftest import Platform, make_clip

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STUDIO = REPO_ROOT / "web" / "app" / "e2e" / "studio.mjs"


def status_of(platform: Platform, video_id: str) -> int:
    try:
        with urllib.request.urlopen(f"{platform.api}/api/v1/videos/{video_id}", timeout=30) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as refused:
        refused.close()
        return int(refused.code)


@pytest.mark.timeout(900)
def test_studio_upload_resume_timeline_edit_delete(platform: Platform, tmp_path: Path) -> None:
    assert (REPO_ROOT / "web" / "app" / "dist" / "index.html").is_file(), "web app not built: run make bootstrap"
    # About 2 MB: at the script's throttled 96 KB/s the reload lands well inside the upload.
    clip = make_clip(tmp_path / "studio.mp4", size="854x480", seconds=8)
    title = f"Studio {uuid.uuid4().hex[:10]}"
    command = ["node", str(STUDIO), "--base", platform.api, "--clip", str(clip), "--title", title]
    # STUDIO_SCREENSHOTS=DIR keeps a screenshot of each step (STUDIO_VIEWPORT=390x844 for a phone).
    if os.environ.get("STUDIO_SCREENSHOTS"):
        command += ["--screenshots", os.environ["STUDIO_SCREENSHOTS"]]
    command += ["--viewport", os.environ.get("STUDIO_VIEWPORT", "1280x800")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=840, check=False)
    assert result.stdout, f"the studio check printed nothing: {result.stderr[-2000:]}"
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    steps = outcome["steps"]
    print(
        f"studio: {steps.get('clip_bytes')} bytes; reload at {steps.get('progress_before_reload')}%, "
        f"PATCH offsets {steps.get('patch_offsets')}; upload {steps.get('upload_ms')} ms; "
        f"timeline {steps.get('statuses_seen')} -> {steps.get('final_status')} in {steps.get('processing_ms')} ms; "
        f"'{steps.get('timeline_text')}'; unfinished after reload: '{steps.get('unfinished_text')}'; "
        f"edited title {steps.get('edited_title')!r}; qoe {steps.get('qoe')!r}"
    )
    assert outcome["ok"] is True and result.returncode == 0, (outcome["failure"], outcome["console_errors"], steps)
    # Resumed, not restarted: a PATCH after the reload started past zero.
    assert steps["resumed_from"] > 0, steps["patch_offsets"]
    assert "stored" in steps["unfinished_text"]
    assert steps["final_status"] == "ready"
    assert steps["edited_title"] == f"{title} <b>edited</b>" and steps["title_markup_elements"] == 0
    assert steps["edited_meta"].startswith("unlisted")
    assert steps["kept_after_escape"] is True and steps["deleted"] is True
    assert outcome["csp_violations"] == []
    assert outcome["console_errors"] == [], outcome["console_errors"]
    assert status_of(platform, steps["video_id"]) == 404
