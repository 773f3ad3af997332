"""Stage: video.transcode-requested → encode one chunk → segments in S3 → video.segment-ready.

Agent `transcode_chunks`. Each request is a few seconds of one video for one or more renditions (or the
whole audio track). The encoder runs in a thread-backed subprocess with capped threads, so the worker
keeps heartbeating to Kafka and Kafka, Cassandra and the API keep their share of the machine.

Output keys are deterministic (`videos/<id>/<rendition>/init.mp4`, `.../seg_00042.m4s`): a redone chunk
overwrites its own objects. SegmentReady is sent only after every object of the chunk is stored, so a
worker killed mid-chunk publishes nothing and the uncommitted request is redone by the next owner of its
partition. A failing chunk is retried (re-published with attempt + 1) a bounded number of times, then the
video fails with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
from processors.media.encode import RenditionChunk, encode_audio, encode_chunk
from processors.plan import audio_from_event, chunk_from_event, from_rational, rung_from_event
from processors.resources import cached_source, catalog, upload, work_dir
from processors.status import publish_status

log = logging.getLogger(__name__)

MAX_ATTEMPTS = int(os.environ.get("TRANSCODE_MAX_ATTEMPTS", "3"))
# Jobs in flight per worker process, and encoder threads per job: concurrency x threads ~ cores to spare.
CONCURRENCY = int(os.environ.get("TRANSCODE_CONCURRENCY", "1"))
ENCODER_THREADS = int(os.environ.get("TRANSCODE_THREADS", "2"))
IMMUTABLE = "public, max-age=31536000, immutable"

JOBS = Counter("transcode_jobs_total", "Transcode requests handled, by outcome", ["outcome", "kind"])
JOB_SECONDS = Histogram(
    "transcode_job_seconds", "Wall time of one transcode request", ["kind"], buckets=(1, 2, 5, 10, 20, 40, 80, 160)
)

transcode_topic = raw_topic(topics.TRANSCODE_REQUESTED)
segment_ready_topic = raw_topic(topics.SEGMENT_READY)


@app.agent(transcode_topic, concurrency=CONCURRENCY)
async def transcode_chunks(stream: faust.StreamT) -> None:
    async for _event, request in decoded(app, stream, "TranscodeRequested", "transcode_chunks"):
        await handle_request(request)


async def handle_request(request: dict[str, Any]) -> None:
    video_id = request["video_id"]
    video = await catalog().get_video(video_id)
    if video is None or video.status in ("deleted", "failed"):
        JOBS.labels("skipped", request["kind"]).inc()
        return
    with JOB_SECONDS.labels(request["kind"]).time():
        try:
            await transcode(request)
        except Exception as exc:  # noqa: BLE001 - every failure is retried, then reported on the video
            await retry_or_fail(request, exc)
            return
    JOBS.labels("done", request["kind"]).inc()


async def transcode(request: dict[str, Any]) -> None:
    video_id = request["video_id"]
    source = await cached_source(video_id, request["source_bucket"], request["source_key"])
    out_dir = Path(tempfile.mkdtemp(prefix="job-", dir=work_dir()))
    try:
        results = await asyncio.to_thread(encode, request, source, out_dir)
        bucket = load_settings().storage.media_bucket
        for result in results.values():
            await store(bucket, video_id, result)
        for result in results.values():
            await announce(request, result)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def encode(request: dict[str, Any], source: Path, out_dir: Path) -> dict[str, RenditionChunk]:
    if request["kind"] == "AUDIO":
        audio = audio_from_event(request["renditions"][0])
        result = encode_audio(
            source,
            out_dir,
            from_rational(request["segment_duration"]),
            audio,
            threads=ENCODER_THREADS,
            source_demuxer=request["source_demuxer"],
        )
        return {audio.name: result}
    rungs = [rung_from_event(rendition) for rendition in request["renditions"]]
    return encode_chunk(
        source,
        chunk_from_event(request),
        rungs,
        out_dir,
        threads=ENCODER_THREADS,
        source_demuxer=request["source_demuxer"],
    )


async def store(bucket: str, video_id: str, result: RenditionChunk) -> None:
    uploads = [upload(bucket, media_key(video_id, f"{result.rendition}/init.mp4"), result.init_path, IMMUTABLE)]
    uploads += [
        upload(bucket, media_key(video_id, f"{result.rendition}/{segment.path.name}"), segment.path, IMMUTABLE)
        for segment in result.segments
    ]
    await asyncio.gather(*uploads)


async def announce(request: dict[str, Any], result: RenditionChunk) -> None:
    video_id = request["video_id"]
    ready = {
        "video_id": video_id,
        "job_id": request["job_id"],
        "rendition": result.rendition,
        "chunk_index": request["chunk_index"],
        "init_key": media_key(video_id, f"{result.rendition}/init.mp4"),
        "init_sha256": result.init_sha256,
        "codecs": result.codecs,
        "timescale": result.timescale,
        "segments": [
            {
                "number": segment.number,
                "start_ticks": segment.start_ticks,
                "duration_ticks": segment.duration_ticks,
                "start_s": segment.start_s,
                "duration_s": segment.duration_s,
                "size_bytes": segment.size_bytes,
                "key": media_key(video_id, f"{result.rendition}/{segment.path.name}"),
                "keyframe_offset": segment.keyframe_offset,
                "keyframe_size": segment.keyframe_size,
            }
            for segment in result.segments
        ],
        "produced_at": datetime.now(UTC),
    }
    value = default_codec().encode("SegmentReady", ready, topic=segment_ready_topic.get_topic_name())
    await segment_ready_topic.send(key=video_id.encode(), value=value)


async def retry_or_fail(request: dict[str, Any], error: Exception) -> None:
    what = f"chunk {request['chunk_index']} of {', '.join(r['name'] for r in request['renditions'])}"
    if request["attempt"] < MAX_ATTEMPTS:
        JOBS.labels("retried", request["kind"]).inc()
        log.warning("%s of %s failed (attempt %d), retrying: %s", what, request["video_id"], request["attempt"], error)
        retry = {**request, "attempt": request["attempt"] + 1}
        value = default_codec().encode("TranscodeRequested", retry, topic=transcode_topic.get_topic_name())
        await transcode_topic.send(key=request["job_id"].encode(), value=value)
        return
    JOBS.labels("failed", request["kind"]).inc()
    log.error("%s of %s failed %d times: %s", what, request["video_id"], request["attempt"], error)
    await publish_status(
        request["video_id"], "failed", f"transcoding {what} failed after {request['attempt']} attempts: {error}"
    )
