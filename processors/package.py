"""Stage: video.segment-ready → Cassandra segment rows → HLS/DASH manifests → video.lifecycle.

Agent `assemble_manifests`. `video.segment-ready` is keyed by video, so one worker sees a video's
announcements in order and alone. Each announcement is recorded (idempotent rows on deterministic keys),
then the video's renditions are checked for completeness (every planned chunk present):

- lowest rung and audio whole → manifests listing just those are written and the video is `playable`;
- every rung whole → the final HLS multivariant, media and I-frame playlists, the DASH MPD, the storyboard
  and the progressive MP4 are written and the video is `ready`.

Manifests are written after the segments they list, each by one PUT, so a player never sees a playlist
that points at a missing object.

Progress is kept per video in the worker (`PROGRESS`), so an announcement costs the same at the last chunk of a
long video as at the first: the video row is read (its status decides), the announcement's rows are written, and
the video's renditions and segment rows are known from memory. They are read from Cassandra once, when a video
is first seen by this worker (or again after a restart, a rebalance, an eviction or a failed step), and then
kept in step with each announcement exactly as Cassandra is: rows by (rendition, segment number), so a
redelivered or redone chunk overwrites its own. A video is forgotten once it is ready, failed or deleted, and at
most PACKAGE_PROGRESS_VIDEOS videos are held (least recently announced forgotten first). `bench/package.py`
measures the cost over a 2-hour video.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import faust
from prometheus_client import Counter

from common import topics
from common.settings import load_settings
from common.storage import media_key
from processors.app import app, raw_topic
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
# Videos whose progress one worker holds. A 2-hour 1080p video (7 renditions, 12,600 segment rows) holds about
# 8 MiB (bench/package.py prints it); a video pushed out is read again from Cassandra when it announces again.
PROGRESS_VIDEOS = int(os.environ.get("PACKAGE_PROGRESS_VIDEOS", "16"))

segment_ready_topic = raw_topic(topics.SEGMENT_READY)


@app.agent(segment_ready_topic)
async def assemble_manifests(stream: faust.StreamT) -> None:
    async for _event, ready in decoded(app, stream, "SegmentReady", "assemble_manifests"):
        # Idempotent as a whole (rows by key, manifests rewritten, statuses republished), so retried as a whole.
        await until_applied(functools.partial(assemble, ready), f"segments of {ready['video_id']}")


@dataclass(frozen=True)
class Variant:
    """What packaging uses of a video_variants row."""

    rendition: str
    chunk_count: int | None
    init_sha256: str | None
    codecs: str | None


@dataclass
class RenditionSegments:
    """One rendition's segment rows as Cassandra holds them: by number (a redone chunk overwrites its own rows),
    with how many rows each chunk has, so "every planned chunk present" is a len() and not a scan."""

    by_number: dict[int, Segment] = field(default_factory=dict)
    per_chunk: dict[int, int] = field(default_factory=dict)

    def put(self, segment: Segment) -> None:
        replaced = self.by_number.get(segment.number)
        if replaced is not None:
            left = self.per_chunk[replaced.chunk_index] - 1
            if left:
                self.per_chunk[replaced.chunk_index] = left
            else:
                del self.per_chunk[replaced.chunk_index]
        self.by_number[segment.number] = segment
        self.per_chunk[segment.chunk_index] = self.per_chunk.get(segment.chunk_index, 0) + 1

    @property
    def chunks_present(self) -> int:
        return len(self.per_chunk)

    def rows(self) -> list[Segment]:
        """In the order a read of the Cassandra partition returns them (segment_number ascending)."""
        return [self.by_number[number] for number in sorted(self.by_number)]


@dataclass
class VideoProgress:
    video_id: str
    variants: dict[str, Variant]
    # Read on the first announcement that gets past the status check (a replay after `ready` never needs them).
    segments: dict[str, RenditionSegments] | None = None

    async def load_segments(self) -> dict[str, RenditionSegments]:
        if self.segments is None:
            names = list(self.variants)
            reads = await asyncio.gather(*(catalog().segments(self.video_id, name) for name in names))
            loaded = {name: RenditionSegments() for name in names}
            for name, rows in zip(names, reads, strict=True):
                for row in rows:
                    loaded[name].put(row)
            self.segments = loaded
        return self.segments

    def listings(self) -> dict[str, list[Segment]]:
        """Every rendition's rows, as the manifests list them (the segments must be loaded)."""
        assert self.segments is not None
        return {name: self.segments[name].rows() for name in self.variants}


class Progress:
    """The videos this worker is packaging, least recently announced first; at most `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._videos: OrderedDict[str, VideoProgress] = OrderedDict()

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._videos

    def __len__(self) -> int:
        return len(self._videos)

    async def of(self, video_id: str) -> VideoProgress:
        """The video's progress, its renditions read from Cassandra when this worker does not hold it."""
        progress = self._videos.get(video_id)
        if progress is not None:
            self._videos.move_to_end(video_id)
            return progress
        rows = await catalog().variants(video_id)
        progress = VideoProgress(
            video_id,
            {row.rendition: Variant(row.rendition, row.chunk_count, row.init_sha256, row.codecs) for row in rows},
        )
        self._videos[video_id] = progress
        while len(self._videos) > self.capacity:
            self._videos.popitem(last=False)
        return progress

    def forget(self, video_id: str) -> None:
        self._videos.pop(video_id, None)

    def clear(self) -> None:
        self._videos.clear()


PROGRESS = Progress(PROGRESS_VIDEOS)


# mode types its handlers with mypy_extensions' VarArg/NamedArg, which no def matches for mypy.
@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def forget_progress_on_rebalance(sender: faust.App, revoked: set[Any], **kwargs: Any) -> None:
    """Videos of a revoked partition get announcements elsewhere: held progress would miss their rows.

    Faust sends this once the agents finished the events they had started, before new partitions are assigned;
    the consumer revokes every partition at each rebalance, so everything is forgotten and read again."""
    PROGRESS.clear()


async def assemble(ready: dict[str, Any]) -> None:
    try:
        await assemble_announcement(ready)
    except BaseException:
        # A step failed half-way (a write perhaps not applied, a bug): what the worker holds may be ahead of
        # Cassandra, so the retry, or the video's next announcement, starts again from what Cassandra holds.
        PROGRESS.forget(ready["video_id"])
        raise


async def assemble_announcement(ready: dict[str, Any]) -> None:
    video_id = ready["video_id"]
    video = await catalog().get_video(video_id)
    if video is None or video.status in ("deleted", "failed") or not video.plan:
        PROGRESS.forget(video_id)
        log.info("ignoring segments of %s (status %s)", video_id, video.status if video else "unknown")
        return
    progress = await PROGRESS.of(video_id)
    variants = progress.variants
    variant = variants.get(ready["rendition"])
    if variant is None:
        raise ValueError(f"{video_id} has no rendition {ready['rendition']!r} in its plan")
    if variant.init_sha256 and variant.init_sha256 != ready["init_sha256"]:
        # Chunks of one rendition must share their init segment or players would decode garbage.
        PROGRESS.forget(video_id)
        await publish_status(video_id, "failed", f"rendition {ready['rendition']}: chunks disagree on the codec setup")
        return
    if not variant.init_sha256:
        await catalog().record_variant_init(
            video_id, ready["rendition"], ready["init_sha256"], ready["codecs"], ready["timescale"]
        )
        variants[variant.rendition] = replace(variant, init_sha256=ready["init_sha256"], codecs=ready["codecs"])
    rows = [segment_row(ready, segment) for segment in ready["segments"]]
    await catalog().record_segments(video_id, rows)
    if video.status == "ready":
        PROGRESS.forget(video_id)
        return  # a replayed announcement after the video was finished

    ladder, _chunk_count = ladder_from_json(video.plan)
    held = await progress.load_segments()  # read after the write, as Cassandra now holds it: put() is idempotent
    for row in rows:
        held[row.rendition].put(row)
    complete = {name for name, variant in variants.items() if held[name].chunks_present >= (variant.chunk_count or 0)}
    first_pass = {ladder.lowest.name} | ({ladder.audio.name} if ladder.audio else set())
    if complete >= set(variants):
        segments = progress.listings()
        if video.status != "playable":
            await publish_package(video_id, ladder, variants, segments, first_pass, "playable")
        await finish(video, ladder, variants, segments)
        PROGRESS.forget(video_id)
    elif complete >= first_pass and video.status != "playable":
        await publish_package(video_id, ladder, variants, progress.listings(), first_pass, "playable")


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
