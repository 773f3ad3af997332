"""Real players in a real browser: hls.js and dash.js in headless Chromium play the platform's streams
from the API to the end with no error event, fatal or not (web/player-check/check.mjs)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from common.settings import REPO_ROOT
from tests.e2e.conftest import Platform, make_clip, upload, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHECKER = REPO_ROOT / "web" / "player-check" / "check.mjs"


@pytest.fixture(scope="module")
def video(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    clip = make_clip(tmp_path_factory.mktemp("players") / "players.mp4", size="854x480", seconds=10)
    video_id = upload(platform, clip, "played by real players")
    return wait_for(platform, video_id, {"ready", "failed"})


def play(player: str, url: str, *extra: str) -> dict[str, Any]:
    result = subprocess.run(
        ["node", str(CHECKER), "--player", player, "--url", url, "--timeout", "120", "--json", *extra],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.stdout, f"the checker printed nothing: {result.stderr[-2000:]}"
    outcome: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    outcome["exit_code"] = result.returncode
    return outcome


@pytest.mark.parametrize(("player", "manifest"), [("hls", "playlist.m3u8"), ("dash", "manifest.mpd")])
def test_player_plays_to_the_end_without_any_error(
    platform: Platform, video: dict[str, Any], player: str, manifest: str
) -> None:
    assert video["status"] == "ready", video.get("status_reason")
    outcome = play(player, f"{platform.api}/api/v1/videos/{video['video_id']}/{manifest}")
    print(f"{player}: time to first frame {outcome['ttff_ms']} ms, {outcome['decoded_frames']} frames decoded")
    assert outcome["errors"] == [], outcome["errors"]
    assert outcome["ok"] is True and outcome["exit_code"] == 0, outcome.get("failure")
    assert outcome["ended"] is True
    assert abs(outcome["current_time_s"] - outcome["duration_s"]) < 0.5
    assert outcome["ttff_ms"] is not None and outcome["ttff_ms"] > 0
    assert outcome["requests"]["failed"] == 0 and outcome["requests"]["http_errors"] == []
