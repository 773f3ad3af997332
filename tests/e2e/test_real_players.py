"""Real players in a real browser: hls.js and dash.js in headless Chromium play the platform's streams
from the API to the end with no error event, fatal or not (web/player-check/check.mjs)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from typing import Any

import pytest

from common.settings import REPO_ROOT
from tests.e2e.conftest import Platform, call, make_clip, upload, wait_for

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


def page_bitrate_kbps(outcome: dict[str, Any]) -> float:
    """The page's own time-weighted bitrate over played time (first frame to end, stalls excluded), from the
    levels hls.js played, sampled every millisecond."""
    start, end = int(outcome["ttff_ms"]), int(outcome["timeline"]["ended_ms"])
    changes = [(0.0, outcome["initial_rendition"]["bitrate"])]
    changes += [(s["at_ms"], s["to"]["bitrate"]) for s in outcome["switches"]]
    stalls = [(s["at_ms"], s["at_ms"] + (s["duration_ms"] or 0)) for s in outcome["stall_details"]]
    weighted = total = 0.0
    for ms in range(start, end):
        if any(a <= ms < b for a, b in stalls):
            continue
        bitrate = next(b for at, b in reversed(changes) if at <= ms)
        weighted += bitrate / 1000
        total += 1
    return weighted / total


def test_a_real_player_with_cmcd_and_our_sdk_lands_in_the_qoe_tables(platform: Platform, video: dict[str, Any]) -> None:
    """hls.js in headless Chromium, CMCD on (query mode, harvested from its segment requests) and our telemetry
    SDK on the same session: the view's row, read back through the analysts' API, has the startup time,
    watch time and bitrate the page measured itself."""
    assert video["status"] == "ready", video.get("status_reason")
    video_id = video["video_id"]
    session_id = f"e2e-{uuid.uuid4().hex}"
    outcome = play(
        "hls",
        f"{platform.api}/api/v1/videos/{video_id}/playlist.m3u8",
        "--rate", "1",
        "--cmcd-session-id", session_id,
        "--cmcd-content-id", video_id,
        "--telemetry", f"{platform.api}/api/v1/telemetry",
        "--video-id", video_id,
        # A stall on a loaded machine is data for the view, not a failure of the check.
        "--ignore-error", "bufferStalledError",
    )  # fmt: skip
    assert outcome["ok"] is True, outcome.get("failure")
    assert outcome["cmcd_requests"] > 0
    assert outcome["telemetry"]["queued"] == 0 and outcome["telemetry"]["dropped"] == 0, outcome["telemetry"]

    deadline = time.monotonic() + 90
    views: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not views:
        listed = call(
            "GET", f"{platform.api}/api/v1/videos/{video_id}/views?session_id={session_id}", headers=platform.auth
        )
        views = listed["views"]
        time.sleep(1)
    # The worker's log says why when the view never showed (a rebalance, a refused event, a stalled store).
    qoe_log = platform.service("qoe-worker").log_path.read_text(errors="replace")[-4000:]
    assert len(views) == 1, f"no QoE view for session {session_id}; the QoE worker's log ends:\n{qoe_log}"
    [row] = views
    page_watch_ms = outcome["timeline"]["ended_ms"]
    page_kbps = page_bitrate_kbps(outcome)
    print(
        f"page: first frame {outcome['ttff_ms']} ms, watch {page_watch_ms} ms, {page_kbps:.1f} kbps; "
        f"QoE row: startup {row['video_startup_time_ms']} ms, watch {row['watch_time_ms']} ms, "
        f"{row['average_bitrate_kbps']:.1f} kbps, bytes {row['bytes_served']}, close {row['close_reason']}"
    )
    assert (row["close_reason"], row["exit_before_video_start"], row["playback_failure"]) == ("end", False, False)
    assert row["device_class"] == "desktop"
    # Page and SDK read the same moments through separate listeners and clocks (performance.now vs Date.now).
    assert abs(row["video_startup_time_ms"] - outcome["ttff_ms"]) <= 50
    assert abs(row["watch_time_ms"] - page_watch_ms) <= 100
    assert abs(row["average_bitrate_kbps"] - page_kbps) <= 0.02 * page_kbps

    # The harvested CMCD requests count as the video's bytes served in its windows: the window rows are written
    # by the worker's flushes, so wait for them rather than read once.
    served = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and served == 0:
        windows = call("GET", f"{platform.api}/api/v1/videos/{video_id}/qoe?granularity=60", headers=platform.auth)
        served = sum(w["bytes_served"] or 0 for w in windows["windows"])
        time.sleep(1)
    assert served > 0, f"no bytes served in the windows of {video_id}: {windows['windows']}"
