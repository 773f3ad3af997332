"""The web app (web/app) in a real browser against the real platform: Home lists a freshly processed video, the
search box finds it, its Watch page plays it to the first frame with the keyboard working, back/forward move
between the pages, and the CSP the API sends is never violated (web/app/e2e/smoke.mjs drives Debian's Chromium
with playwright-core). Needs the app built and its packages installed: `make bootstrap` does both."""

from __future__ import annotations

import json
import random
import string
import subprocess
from typing import Any

import pytest

from common.settings import REPO_ROOT
from tests.e2e.conftest import Platform, make_clip, upload, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMOKE = REPO_ROOT / "web" / "app" / "e2e" / "smoke.mjs"


@pytest.fixture(scope="module")
def video(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # A made-up word only this video has, so the search hits it alone whatever else the keyspace holds.
    word = "".join(random.choices(string.ascii_lowercase, k=12))
    clip = make_clip(tmp_path_factory.mktemp("webapp") / "webapp.mp4", size="640x360", seconds=6)
    video_id = upload(platform, clip, f"Web app {word}", description="Played by the browser test", tags=["webapp"])
    ready = wait_for(platform, video_id, {"ready", "failed"})
    return {**ready, "word": word}


def test_home_search_and_watch_to_the_first_frame(platform: Platform, video: dict[str, Any]) -> None:
    assert video["status"] == "ready", video.get("status_reason")
    assert (REPO_ROOT / "web" / "app" / "dist" / "index.html").is_file(), "web app not built: run make bootstrap"
    command = ["node", str(SMOKE), "--base", platform.api, "--title", video["title"], "--query", video["word"]]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    assert result.stdout, f"the smoke check printed nothing: {result.stderr[-2000:]}"
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"web app: home {outcome['steps'].get('home_ms')} ms, search {outcome['steps'].get('search_ms')} ms, "
          f"click to first frame {outcome['ttff_ms']} ms")  # fmt: skip
    assert outcome["ok"] is True and result.returncode == 0, (outcome["failure"], outcome["console_errors"])
    assert outcome["steps"]["home_status"] == 200 and outcome["steps"]["direct_route_status"] == 200
    assert "unsafe-inline" not in outcome["steps"]["home_csp"]
    assert outcome["steps"]["watch_heading"] == video["title"]
    assert outcome["steps"]["qualities"][0].startswith("Auto")
    assert outcome["csp_violations"] == []
    assert not [e for e in outcome["console_errors"] if "Content Security Policy" in e], outcome["console_errors"]
