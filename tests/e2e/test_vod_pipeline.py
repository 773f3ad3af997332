"""Upload → chunked transcoding → HLS/DASH, end to end on the real servers, checked by real decoders."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from fractions import Fraction
from pathlib import Path
from typing import Any

import m3u8
import pytest

from tests.e2e.conftest import Platform, call, make_clip, upload, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", size="854x480", rate=30, seconds=10)


@pytest.fixture(scope="module")
def ready_video(platform: Platform, source: Path) -> dict[str, Any]:
    video_id = upload(platform, source, "e2e ladder", tags=["e2e"], thumbnail_time=2.0)
    return wait_for(platform, video_id, {"ready", "failed"})


def decoded_frames(url: str, *args: str) -> tuple[int, float, str]:
    """Decode every frame of the selected stream over HTTP; returns (frames, duration spanned, errors)."""
    result = subprocess.run(
        ["ffprobe", "-v", "error", *args, "-count_frames", "-show_entries", "stream=nb_read_frames",
         "-show_entries", "frame=best_effort_timestamp_time", "-of", "json", url],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    data = json.loads(result.stdout or "{}")
    frames = data.get("frames", [])
    times = [float(f["best_effort_timestamp_time"]) for f in frames if "best_effort_timestamp_time" in f]
    span = max(times) - min(times) if times else 0.0
    return len(frames), span, result.stderr.strip()


def test_upload_reaches_ready_with_a_ladder(ready_video: dict[str, Any]) -> None:
    assert ready_video["status"] == "ready", ready_video.get("status_reason")
    names = [r["name"] for r in ready_video["renditions"] if r["kind"] == "video"]
    assert names[:3] == ["240p", "360p", "480p"]
    assert all(r["complete"] for r in ready_video["renditions"])
    assert ready_video["playable_at"] <= ready_video["ready_at"]


def test_multivariant_playlist_parses_with_the_m3u8_library(platform: Platform, ready_video: dict[str, Any]) -> None:
    url = f"{platform.api}/api/v1/videos/{ready_video['video_id']}/playlist.m3u8"
    with urllib.request.urlopen(url) as reply:
        assert reply.headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
        playlist = m3u8.loads(reply.read().decode(), uri=url)
    assert playlist.is_variant
    assert len(playlist.playlists) >= 3
    for variant in playlist.playlists:
        info = variant.stream_info
        assert info.bandwidth >= info.average_bandwidth > 0
        assert info.codecs.startswith("avc1.") and "mp4a.40.2" in info.codecs
        assert info.resolution and info.frame_rate == 30
    assert [m.type for m in playlist.media] == ["AUDIO"]
    assert len(playlist.iframe_playlists) == len(playlist.playlists)


def test_every_rung_decodes_over_http_with_every_frame(
    platform: Platform, ready_video: dict[str, Any], source: Path
) -> None:
    expected_frames, source_span, _ = decoded_frames(str(source), "-select_streams", "v:0")
    url = f"{platform.api}/api/v1/videos/{ready_video['video_id']}/playlist.m3u8"
    playlist = m3u8.loads(urllib.request.urlopen(url).read().decode(), uri=url)
    frame = Fraction(1, 30)
    for index, _variant in enumerate(playlist.playlists):
        frames, span, errors = decoded_frames(url, "-select_streams", f"v:{index}")
        assert errors == "", errors
        assert frames == expected_frames, f"rung {index}: {frames} frames, source has {expected_frames}"
        # Durations match within one frame (first to last frame, both sides).
        assert abs(span - source_span) <= float(frame)
    audio = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", url, "-map", "0:a:0", "-f", "null", "-"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert audio.returncode == 0 and audio.stderr.strip() == ""


def test_dash_manifest_decodes_over_http(platform: Platform, ready_video: dict[str, Any], source: Path) -> None:
    expected_frames, _, _ = decoded_frames(str(source), "-select_streams", "v:0")
    url = f"{platform.api}/api/v1/videos/{ready_video['video_id']}/manifest.mpd"
    video_streams = len([r for r in ready_video["renditions"] if r["kind"] == "video"])
    for index in range(video_streams):
        frames, _, errors = decoded_frames(url, "-select_streams", f"v:{index}")
        assert errors == "", errors
        assert frames == expected_frames


def test_progressive_poster_and_storyboard(platform: Platform, ready_video: dict[str, Any], source: Path) -> None:
    base = f"{platform.api}/api/v1/videos/{ready_video['video_id']}"
    expected_frames, _, _ = decoded_frames(str(source), "-select_streams", "v:0")
    frames, _, errors = decoded_frames(f"{base}/stream", "-select_streams", "v:0")
    assert errors == "" and frames == expected_frames
    request = urllib.request.Request(f"{base}/stream", headers={"Range": "bytes=0-99"})
    with urllib.request.urlopen(request) as reply:
        assert reply.status == 206 and len(reply.read()) == 100
    with urllib.request.urlopen(f"{base}/poster.jpg") as reply:
        assert reply.read()[:2] == b"\xff\xd8"
    with urllib.request.urlopen(f"{base}/storyboard.vtt") as reply:
        vtt = reply.read().decode()
    assert vtt.startswith("WEBVTT") and "storyboard.jpg#xywh=" in vtt


def test_status_history_goes_through_playable_to_ready(platform: Platform, ready_video: dict[str, Any]) -> None:
    status = call("GET", f"{platform.api}/api/v1/videos/{ready_video['video_id']}/status")
    seen = [entry["status"] for entry in status["history"]]
    assert seen.index("processing") < seen.index("playable") < seen.index("ready")
