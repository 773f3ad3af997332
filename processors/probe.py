"""Stage: video.uploaded → probe and plan → video.transcode-requested.

Agent `plan_transcodes`: fetches the upload into a directory of its own, probes it with the hardened
ffprobe (processors/media/probe.py), refuses what is not a sane video with a reason a person can read,
plans the per-title ladder and the segment-aligned chunks, records the plan, writes the poster, and fans
the work out as TranscodeRequested events (processors/plan.py says in which order and why).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from prometheus_client import Counter, Histogram

from common import topics
from common.avro import default_codec
from common.settings import load_settings
from common.storage import media_key
from processors.app import app, raw_topic
from processors.dead_letters import decoded
from processors.media.encode import EncodeError, make_poster
from processors.media.ladder import ladder_chunks, plan_ladder
from processors.media.probe import RejectedUpload, SourceInfo, probe_source
from processors.plan import Source, plan_to_json, transcode_requests
from processors.resources import catalog, download, upload, work_dir
from processors.retry import until_applied
from processors.status import publish_status

log = logging.getLogger(__name__)

# Two 4 s segments per chunk: a chunk of the whole H.264 ladder at 1080p takes seconds, not minutes.
CHUNK_SEGMENTS = 2
PROBES = Counter("probe_results_total", "Uploads probed, by outcome", ["outcome"])
PROBE_SECONDS = Histogram("probe_seconds", "Time to fetch, probe and plan one upload")

uploaded_topic = raw_topic(topics.VIDEO_UPLOADED)
transcode_topic = raw_topic(topics.TRANSCODE_REQUESTED)


@app.agent(uploaded_topic)
async def plan_transcodes(stream: faust.StreamT) -> None:
    async for _event, upload_event in decoded(app, stream, "VideoUploaded", "plan_transcodes"):
        with PROBE_SECONDS.time():
            # A replayed upload is skipped by plan_one itself, so a retry after a store failure is safe.
            await until_applied(functools.partial(plan_one, upload_event), f"plan of {upload_event['video_id']}")


async def plan_one(uploaded: dict[str, Any]) -> None:
    video_id = uploaded["video_id"]
    video = await catalog().get_video(video_id)
    if video is None or video.status in ("deleted", "failed", "playable", "ready"):
        # Deleted meanwhile, or a replay of an upload already planned: nothing to do.
        log.info("skipping upload of %s (status %s)", video_id, video.status if video else "unknown")
        return
    scratch = Path(tempfile.mkdtemp(prefix="probe-", dir=work_dir()))
    try:
        source_path = await download(uploaded["source_bucket"], uploaded["source_key"], scratch / "source")
        try:
            info = await asyncio.to_thread(probe_source, source_path)
        except RejectedUpload as refusal:
            PROBES.labels("rejected").inc()
            await publish_status(video_id, "failed", str(refusal))
            return
        PROBES.labels("accepted").inc()
        await plan_and_fan_out(uploaded, info, source_path, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def plan_and_fan_out(uploaded: dict[str, Any], info: SourceInfo, source_path: Path, scratch: Path) -> None:
    video_id = uploaded["video_id"]
    ladder = plan_ladder(info)
    chunks = ladder_chunks(ladder, info, CHUNK_SEGMENTS)
    fps = float(info.fps)
    await catalog().record_plan(
        video_id, plan_to_json(ladder, len(chunks)), info.demuxer, info.duration_s, info.width, info.height, fps
    )
    for rung in ladder.rungs:
        await catalog().declare_variant(
            video_id, rung.name, "video", rung.codec.upper(), rung.width, rung.height, float(rung.fps), len(chunks)
        )
    if ladder.audio is not None:
        await catalog().declare_variant(video_id, ladder.audio.name, "audio", "AAC", None, None, None, 1)

    source = Source(video_id, uploaded["source_bucket"], uploaded["source_key"], info.demuxer)
    jobs = transcode_requests(source, ladder, chunks, datetime.now(UTC))
    first_names = {ladder.lowest.name} | ({ladder.audio.name} if ladder.audio else set())
    # Round-robin in publication order over as many partitions as there are first-pass jobs (lowest rung +
    # audio): every partition used starts with first-pass work and the rest queues behind it, so whichever
    # workers hold them do the fast pass first. Partition order is the only order Kafka keeps.
    first_pass = sum(1 for job in jobs if len(job["renditions"]) == 1 and job["renditions"][0]["name"] in first_names)
    partitions = min(topics.partitions(topics.TRANSCODE_REQUESTED), max(1, first_pass))
    codec = default_codec()
    for index, job in enumerate(jobs):
        await transcode_topic.send(
            key=job["job_id"].encode(),
            value=codec.encode("TranscodeRequested", job, topic=transcode_topic.get_topic_name()),
            partition=index % partitions,
        )
    log.info("video %s: %d rungs, %d chunks, %d jobs", video_id, len(ladder.rungs), len(chunks), len(jobs))
    await publish_poster(video_id, uploaded, info, source_path, scratch)


async def publish_poster(
    video_id: str, uploaded: dict[str, Any], info: SourceInfo, source_path: Path, scratch: Path
) -> None:
    wanted = uploaded.get("thumbnail_time_s")
    # Default a little into the video: first frames are often black.
    at_s = min(wanted if wanted is not None else info.duration_s * 0.1, max(0.0, info.duration_s - 0.1))
    try:
        poster = await asyncio.to_thread(
            make_poster, source_path, at_s, scratch / "poster.jpg", source_demuxer=info.demuxer, threads=1
        )
    except EncodeError as exc:
        log.warning("video %s: no poster (%s)", video_id, exc)
        return
    await upload(load_settings().storage.media_bucket, media_key(video_id, "poster.jpg"), poster)
