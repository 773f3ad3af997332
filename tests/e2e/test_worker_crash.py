"""A transcode worker killed with SIGKILL in the middle of a chunk: the video still reaches `ready`, and
every segment is stored once and listed once."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import m3u8
import pytest

from common.storage import storage_client
from tests.e2e.conftest import Platform, make_clip, upload, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def child_ffmpeg(pid: int) -> int | None:
    """An ffmpeg process whose parent is `pid` (the worker's encoder), if one is running."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"ffmpeg" in cmdline.split(b"\0")[0]:
            return int(entry.name)
    return None


def test_sigkill_mid_chunk_still_reaches_ready_without_duplicates(platform: Platform, tmp_path: Path) -> None:
    source = make_clip(tmp_path / "crash.mp4", size="854x480", seconds=20)
    worker = platform.service("transcode-worker-1")
    video_id = upload(platform, source, "killed mid-chunk")

    deadline = time.monotonic() + 120
    encoder = None
    while encoder is None and time.monotonic() < deadline:
        worker_pid = worker.pid()
        assert worker_pid is not None
        encoder = child_ffmpeg(worker_pid)
        time.sleep(0.05)
    assert encoder is not None, "the worker never started encoding"
    os.killpg(worker_pid, signal.SIGKILL)  # the worker and its ffmpeg, mid-chunk
    worker.stop()
    assert worker.start() == "started"
    worker.wait_ready()

    video = wait_for(platform, video_id, {"ready", "failed"}, timeout_s=600)
    assert video["status"] == "ready", video.get("status_reason")

    base = f"{platform.api}/api/v1/videos/{video_id}"
    master = m3u8.loads(urllib.request.urlopen(f"{base}/playlist.m3u8").read().decode())
    uris = [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]
    settings = platform.settings.storage
    client = storage_client(settings)
    for uri in uris:
        rendition = uri.split("/")[0]
        media = m3u8.loads(urllib.request.urlopen(f"{base}/{uri}").read().decode())
        listed = [segment.uri for segment in media.segments]
        assert len(listed) == len(set(listed)), f"{rendition}: a segment is listed twice"
        assert listed == [f"seg_{n:05d}.m4s" for n in range(len(listed))], f"{rendition}: gap or disorder"
        stored = sorted(
            o.object_name.rsplit("/", 1)[1]
            for o in client.list_objects(settings.media_bucket, prefix=f"videos/{video_id}/{rendition}/")
            if o.object_name.endswith(".m4s")
        )
        assert stored == listed, f"{rendition}: stored {stored} but listed {listed}"
