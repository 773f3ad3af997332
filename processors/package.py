"""Stage: video.segment-ready → Cassandra segment rows → HLS/DASH manifests → video.lifecycle.

Agent `assemble_manifests`. `video.segment-ready` is keyed by video, so one worker sees a video's
announcements in order and alone. Each announcement is recorded (idempotent rows on deterministic keys),
then the video's renditions are checked for completeness (every planned chunk present):

- lowest rung and audio whole → manifests listing just those are written and the video is `playable`;
- every rung whole → the final HLS multivariant, media and I-frame playlists, the DASH MPD, the storyboard
  and the progressive MP4 are written and the video is `ready`.

Manifests are written after the segments they list, each by one PUT, so a player never sees a playlist
that points at a missing object.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import faust
from prometheus_client import Counter

from common.settings import load_settings
from common.storage import media_key
from processors.app import app, topic_name
from processors.dead_letters import decoded
from processors.media.encode import SegmentInfo, make_storyboard
from processors.media.ladder import Ladder
from processors.media.manifests import (
    AudioRendition,
    VideoRendition,
    average_bitrate,
    ladder_renditions,
    peak_bitrate,
    target_duration,
    write_manifests,
)
from processors.media.tools import FFMPEG, ToolLimits, run_tool, untrusted_input_args
from processors.plan import ladder_from_json
from processors.resources import catalog, download, upload, work_dir
from processors.retry import until_applied
from processors.status import publish_status
from sinks.catalog import Segment

log = logging.getLogger(__name__)

MANIFEST_CACHE = {"playable": "public, max-age=5", "ready": "public, max-age=60"}
IMMUTABLE = "public, max-age=31536000, immutable"
# The progressive download is the best H.264 rung up to this height: a phone-friendly single file.
PROGRESSIVE_MAX_HEIGHT = 720
MILESTONES = Counter("package_milestones_total", "Videos that reached a milestone", ["status"])

segment_ready_topic = app.topic(topic_name("video.segment-ready"), key_serializer="raw", value_serializer="raw")


@app.agent(segment_ready_topic)
async def assemble_manifests(stream: faust.StreamT) -> None:
    async for _event, ready in decoded(app, stream, "SegmentReady", "assemble_manifests"):
        # Idempotent as a whole (rows by key, manifests rewritten, statuses republished), so retried as a whole.
        await until_applied(functools.partial(assemble, ready), f"segments of {ready['video_id']}")


async def assemble(ready: dict[str, Any]) -> None:
    video_id = ready["video_id"]
    video = await catalog().get_video(video_id)
    if video is None or video.status in ("deleted", "failed") or not video.plan:
        log.info("ignoring segments of %s (status %s)", video_id, video.status if video else "unknown")
        return
    variants = {variant.rendition: variant for variant in await catalog().variants(video_id)}
    variant = variants.get(ready["rendition"])
    if variant is None:
        raise ValueError(f"{video_id} has no rendition {ready['rendition']!r} in its plan")
    if variant.init_sha256 and variant.init_sha256 != ready["init_sha256"]:
        # Chunks of one rendition must share their init segment or players would decode garbage.
        await publish_status(video_id, "failed", f"rendition {ready['rendition']}: chunks disagree on the codec setup")
        return
    if not variant.init_sha256:
        await catalog().record_variant_init(
            video_id, ready["rendition"], ready["init_sha256"], ready["codecs"], ready["timescale"]
        )
    await catalog().record_segments(video_id, [segment_row(ready, segment) for segment in ready["segments"]])
    if video.status == "ready":
        return  # a replayed announcement after the video was finished

    ladder, _chunk_count = ladder_from_json(video.plan)
    variants = {variant.rendition: variant for variant in await catalog().variants(video_id)}
    segments = {name: await catalog().segments(video_id, name) for name in variants}
    complete = {
        name
        for name, variant in variants.items()
        if len({segment.chunk_index for segment in segments[name]}) >= (variant.chunk_count or 0)
    }
    first_pass = {ladder.lowest.name} | ({ladder.audio.name} if ladder.audio else set())
    if complete >= set(variants):
        if video.status != "playable":
            await publish_package(video_id, ladder, variants, segments, first_pass, "playable")
        await finish(video, ladder, variants, segments)
    elif complete >= first_pass and video.status != "playable":
        await publish_package(video_id, ladder, variants, segments, first_pass, "playable")


def segment_row(ready: dict[str, Any], segment: dict[str, Any]) -> Segment:
    return Segment(
        rendition=ready["rendition"],
        number=segment["number"],
        chunk_index=ready["chunk_index"],
        start_s=segment["start_s"],
        duration_s=segment["duration_s"],
        size_bytes=segment["size_bytes"],
        object_key=segment["key"],
        init_key=ready["init_key"],
        timescale=ready["timescale"],
        start_ticks=segment["start_ticks"],
        duration_ticks=segment["duration_ticks"],
        keyframe_offset=segment["keyframe_offset"],
        keyframe_size=segment["keyframe_size"],
    )


def segment_info(segment: Segment) -> SegmentInfo:
    return SegmentInfo(
        number=segment.number,
        start_s=segment.start_s,
        duration_s=segment.duration_s,
        size_bytes=segment.size_bytes,
        path=Path(segment.object_key),
        timescale=segment.timescale,
        start_ticks=segment.start_ticks,
        duration_ticks=segment.duration_ticks,
        keyframe_offset=segment.keyframe_offset,
        keyframe_size=segment.keyframe_size,
    )


async def publish_package(
    video_id: str,
    ladder: Ladder,
    variants: Mapping[str, Any],
    segments: Mapping[str, Sequence[Segment]],
    only: set[str] | None,
    status: str,
) -> None:
    """Write and upload the manifests of the renditions in `only` (all when None), then announce `status`."""
    infos = {name: [segment_info(s) for s in rows] for name, rows in segments.items()}
    codecs = {name: variant.codecs for name, variant in variants.items()}
    videos, audio = ladder_renditions(ladder, infos, codecs, only=only)
    bucket = load_settings().storage.media_bucket
    scratch = Path(tempfile.mkdtemp(prefix="package-", dir=work_dir()))
    try:
        files = write_manifests(scratch, videos, audio)
        # Rendition playlists first, the entry points last.
        ordered = [*files.media_playlists.values(), *files.iframe_playlists.values(), files.mpd, files.multivariant]
        for path in ordered:
            await upload(
                bucket, media_key(video_id, path.relative_to(scratch).as_posix()), path, MANIFEST_CACHE[status]
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    MILESTONES.labels(status).inc()
    await publish_status(video_id, status)


async def finish(
    video: Any, ladder: Ladder, variants: Mapping[str, Any], segments: Mapping[str, Sequence[Segment]]
) -> None:
    video_id = video.video_id
    infos = {name: [segment_info(s) for s in rows] for name, rows in segments.items()}
    codecs = {name: variant.codecs for name, variant in variants.items()}
    videos, audio = ladder_renditions(ladder, infos, codecs)
    renditions: list[VideoRendition | AudioRendition] = [*videos, *([audio] if audio else [])]
    for rendition in renditions:
        target = target_duration(rendition.segments)
        await catalog().complete_variant(
            video_id,
            rendition.name,
            rendition.codecs,
            peak_bitrate(rendition.segments, target),
            average_bitrate(rendition.segments),
        )
    scratch = Path(tempfile.mkdtemp(prefix="finish-", dir=work_dir()))
    try:
        await write_extras(video, ladder, segments, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    await publish_package(video_id, ladder, variants, segments, None, "ready")


async def write_extras(video: Any, ladder: Ladder, segments: Mapping[str, Sequence[Segment]], scratch: Path) -> None:
    """The storyboard (from the lowest rung: cheap to decode) and the progressive MP4."""
    bucket = load_settings().storage.media_bucket
    lowest = await joined_track(bucket, segments[ladder.lowest.name], scratch / "lowest.mp4")
    duration = sum(s.duration_s for s in segments[ladder.lowest.name])
    board = await asyncio.to_thread(
        make_storyboard,
        lowest,
        duration,
        scratch / "storyboard",
        display_width=video.width,
        display_height=video.height,
        source_demuxer="mov",
        threads=1,
    )
    # The API serves the sprite as storyboard.jpg next to storyboard.vtt.
    board.vtt_path.write_text(board.vtt_path.read_text().replace("sprite.jpg#", "storyboard.jpg#"))
    await upload(bucket, media_key(video.video_id, "storyboard.jpg"), board.sprite_path, IMMUTABLE)
    await upload(bucket, media_key(video.video_id, "storyboard.vtt"), board.vtt_path, IMMUTABLE)

    h264 = [rung for rung in ladder.rungs if rung.codec == "h264"]
    chosen = max((r for r in h264 if r.height <= PROGRESSIVE_MAX_HEIGHT), key=lambda r: r.height, default=h264[0])
    video_track = (
        lowest
        if chosen.name == ladder.lowest.name
        else await joined_track(bucket, segments[chosen.name], scratch / "video.mp4")
    )
    inputs = [video_track]
    if ladder.audio is not None:
        inputs.append(await joined_track(bucket, segments[ladder.audio.name], scratch / "audio.mp4"))
    progressive = scratch / "progressive.mp4"
    command = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error"]
    for track in inputs:
        command += untrusted_input_args(track, demuxer="mov")
    command += ["-map", "0:v:0"] + (["-map", "1:a:0"] if len(inputs) > 1 else [])
    # faststart moves the index to the front so a browser can start playing before the whole file arrives.
    command += ["-c", "copy", "-movflags", "+faststart", "-f", "mp4", str(progressive)]
    await asyncio.to_thread(run_tool, command, ToolLimits(timeout_s=600.0))
    await upload(bucket, media_key(video.video_id, "progressive.mp4"), progressive, IMMUTABLE)


async def joined_track(bucket: str, rows: Sequence[Segment], path: Path) -> Path:
    """Init + media segments concatenated: a valid fragmented MP4 of the whole rendition."""
    ordered = sorted(rows, key=lambda s: s.number)
    parts = path.parent / f"{path.stem}-parts"
    parts.mkdir(parents=True, exist_ok=True)
    keys = [ordered[0].init_key, *(s.object_key for s in ordered)]
    files = [parts / f"{i:05d}" for i in range(len(keys))]
    await asyncio.gather(*(download(bucket, key, file) for key, file in zip(keys, files, strict=True)))
    with path.open("wb") as joined:
        for file in files:
            with file.open("rb") as part:
                shutil.copyfileobj(part, joined)
    shutil.rmtree(parts, ignore_errors=True)
    return path
