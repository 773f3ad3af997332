"""Transcoding benchmark: the pipeline against one bare ffmpeg command, side by side in one run.

    .venv/bin/python -m bench.transcode [--duration 60] [--api http://127.0.0.1:8080]

Needs the platform running (`make demo` or `make up` + `python -m infra.services up`). It generates a
1080p60 source (testsrc2 + sine), then measures:

1. bare: one ffmpeg process encoding the same ladder the probe plans for this source (same rungs, presets,
   CRF caps, GOPs, threads) over the whole file, plus the audio track — no Kafka, no chunks, no S3;
2. pipeline: upload through the API, then `complete` → `playable` and `complete` → `ready`.

It prints pipeline ÷ bare and playable ÷ ready. Ratios, not absolute times, are the result: both sides run
on the same machine in the same minute.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from processors.media.encode import chunk_command, encode_audio
from processors.media.ladder import Chunk, ladder_chunks, plan_ladder
from processors.media.probe import probe_source
from processors.transcode import ENCODER_THREADS
from producers import upload_cli


def generate_source(path: Path, duration_s: int) -> None:
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate=60:duration={duration_s}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={duration_s}",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "192k", "-shortest", str(path),
        ],
        check=True,
    )  # fmt: skip


def bare_ffmpeg_seconds(source: Path, work: Path) -> tuple[float, list[str]]:
    info = probe_source(source)
    ladder = plan_ladder(info)
    chunks = ladder_chunks(ladder, info, chunk_segments=10**6)  # one chunk: the whole file
    whole: Chunk = chunks[0]
    outputs = [work / f"bare-{rung.name}.mp4" for rung in ladder.rungs]
    command = chunk_command(source, whole, ladder.rungs, outputs, threads=ENCODER_THREADS, source_demuxer=info.demuxer)
    began = time.monotonic()
    subprocess.run(command, check=True, cwd=work)
    if ladder.audio is not None:
        encode_audio(source, work / "bare-audio", ladder.segment_duration, ladder.audio, threads=ENCODER_THREADS)
    return time.monotonic() - began, [rung.name for rung in ladder.rungs]


def call(method: str, url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return dict(json.loads(reply.read() or b"{}"))


def pipeline_seconds(source: Path, api: str, timeout_s: float = 1800) -> tuple[float, float, dict[str, Any]]:
    """Upload as the CLI does (presigned PUT or multipart), then time complete → playable and → ready."""

    async def send() -> str:
        # Uploads need a creator: a throwaway one per run, its generated password next to the source.
        options = argparse.Namespace(
            file=source, title="bench 1080p60", api=api, privacy="public", description=None, tags=None,
            thumbnail_time=None, token=None, email=f"bench-{uuid.uuid4().hex[:8]}@vidplat.local",
            password_file=source.parent / "creator.password", sign_up=True,
        )  # fmt: skip
        async with aiohttp.ClientSession() as session:
            options.auth = await upload_cli.authenticate(session, options)
            return await upload_cli.upload(session, options, sys.stderr)

    video_id = asyncio.run(send())
    began = time.monotonic()
    playable_s = None
    while time.monotonic() - began < timeout_s:
        video = call("GET", f"{api}/api/v1/videos/{video_id}")
        status = video["status"]
        if status == "failed":
            raise RuntimeError(f"video failed: {video.get('status_reason')}")
        if status in ("playable", "ready") and playable_s is None:
            playable_s = time.monotonic() - began
        if status == "ready":
            return playable_s or 0.0, time.monotonic() - began, video
        time.sleep(0.2)
    raise TimeoutError(f"video {video_id} not ready after {timeout_s:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=60)
    parser.add_argument("--api", default="http://127.0.0.1:8080")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-transcode-") as tmp:
        work = Path(tmp)
        source = work / "source.mp4"
        print(f"generating a {args.duration} s 1080p60 source …", flush=True)
        generate_source(source, args.duration)
        info = probe_source(source)
        print(f"source: {info.width}x{info.height} @ {float(info.fps):.2f} fps, {info.duration_s:.1f} s", flush=True)

        bare_s, rungs = bare_ffmpeg_seconds(source, work)
        print(f"bare ffmpeg, one process, ladder {', '.join(rungs)} + audio: {bare_s:.1f} s", flush=True)
        playable_s, ready_s, video = pipeline_seconds(source, args.api)
        print(f"pipeline: complete → playable {playable_s:.1f} s, complete → ready {ready_s:.1f} s", flush=True)
        print(f"renditions: {', '.join(r['name'] for r in video.get('renditions', []))}")
        print(f"pipeline ÷ bare ffmpeg      = {ready_s / bare_s:.2f}")
        print(f"time to playable ÷ to ready = {playable_s / ready_s:.2f}")


if __name__ == "__main__":
    main()
