"""Watch a video in a real headless player with telemetry on, then print the view's QoE row.

    .venv/bin/python -m producers.watch_cli VIDEO_ID [--api http://127.0.0.1:8080]
        [--email E --password-file F | --token T]

It plays the video's HLS stream with hls.js in headless Chromium (web/player-check/check.mjs) at real
speed, with CMCD on (query mode, harvested by the API from the segment requests) and our telemetry SDK
(web/sdk/vidplat-telemetry.js) posting beacons on the same session. Then it signs in as the video's owner
and polls the analysts' API (``GET /api/v1/videos/{id}/views?session_id=``) until the QoE agent has
written the view, and prints the row beside what the page measured. Exit 0 once the row is there, 1 when
playback failed or the row did not come.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from common.settings import REPO_ROOT
from producers.upload_cli import UploadFailed, authenticate

CHECKER = REPO_ROOT / "web" / "player-check" / "check.mjs"
ROW_FIELDS = (
    "view_id", "video_startup_time_ms", "watch_time_ms", "played_ms", "average_bitrate_kbps", "rebuffer_count",
    "rebuffer_percentage", "startup_time_score", "smoothness_score", "video_quality_score", "playback_success_score",
    "device_class", "close_reason", "started_at", "ended_at",
)  # fmt: skip


async def play(api: str, video_id: str, session_id: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        "node", str(CHECKER), "--player", "hls", "--url", f"{api}/api/v1/videos/{video_id}/playlist.m3u8",
        "--rate", "1", "--json", "--cmcd-session-id", session_id, "--cmcd-content-id", video_id,
        "--telemetry", f"{api}/api/v1/telemetry", "--video-id", video_id,
        "--ignore-error", "bufferStalledError",  # a stall is what QoE measures, not a failed playback
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    lines = stdout.decode().strip().splitlines()
    if not lines:
        raise UploadFailed(f"the player printed nothing: {stderr.decode()[-1000:]}")
    outcome: dict[str, Any] = json.loads(lines[-1])
    return outcome


async def view_row(
    session: aiohttp.ClientSession, api: str, video_id: str, session_id: str, auth: dict[str, str], timeout_s: float
) -> dict[str, Any] | None:
    url = f"{api}/api/v1/videos/{video_id}/views"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        async with session.get(url, params={"session_id": session_id}, headers=auth) as response:
            if response.status != 200:
                raise UploadFailed(f"the analysts' API answered {response.status}: {(await response.text())[:300]}")
            views = (await response.json())["views"]
        if views:
            row: dict[str, Any] = views[0]
            return row
        await asyncio.sleep(1)
    return None


async def run(options: argparse.Namespace) -> int:
    api = options.api.rstrip("/")
    session_id = f"watch-{uuid.uuid4().hex}"
    print(f"playing {options.video_id} in headless Chromium (hls.js, CMCD + telemetry, session {session_id})")
    async with aiohttp.ClientSession() as session:
        try:
            auth = await authenticate(session, options)
            outcome = await play(api, options.video_id, session_id)
            if not outcome.get("ok"):
                print(f"playback failed: {outcome.get('failure')}", file=sys.stderr)
                return 1
            print(
                f"page measured: first frame {outcome['ttff_ms']} ms, ended at {outcome['timeline'].get('ended_ms')}"
                f" ms, {outcome['cmcd_requests']} requests carried CMCD, telemetry {outcome['telemetry']}"
            )
            row = await view_row(session, api, options.video_id, session_id, auth, options.timeout)
        except (UploadFailed, aiohttp.ClientError, OSError) as exc:
            print(f"watch failed: {exc}", file=sys.stderr)
            return 1
    if row is None:
        print(f"no QoE row for session {session_id} within {options.timeout:.0f} s", file=sys.stderr)
        return 1
    print("QoE row (GET /api/v1/videos/{id}/views):")
    print(json.dumps({name: row.get(name) for name in ROW_FIELDS}, indent=2))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m producers.watch_cli", description=__doc__.splitlines()[0])
    parser.add_argument("video_id")
    parser.add_argument("--api", default="http://127.0.0.1:8080", help="base URL of the API")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the QoE row")
    parser.add_argument("--email", default=os.environ.get("VIDPLAT_EMAIL"), help="the video owner's account")
    parser.add_argument("--password-file", type=Path, help="file holding the password (else $VIDPLAT_PASSWORD)")
    parser.add_argument("--token", default=os.environ.get("VIDPLAT_TOKEN"), help="an access token instead of a login")
    options = parser.parse_args(argv)
    options.sign_up = False
    return options


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
