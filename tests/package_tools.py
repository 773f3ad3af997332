"""A video's packaging input without transcoding it: the plan the probe would make and the SegmentReady
announcements the transcode workers would send, for tests of processors/package.py and bench/package.py.

The plan comes from the real planner (`plan_ladder`, `ladder_chunks` with the probe's CHUNK_SEGMENTS) and the
announcements follow the real job order (`transcode_requests`: lowest rung per chunk, the whole audio, then the
other rungs per chunk), one per rendition of a job, with the fields `processors/transcode.py` fills.
`Milestones` stands in for the manifests and the finish, which need media.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from common.storage import media_key
from processors.media.ladder import Chunk, Ladder, ladder_chunks, plan_ladder
from processors.media.probe import SourceInfo
from processors.plan import Source, plan_to_json, transcode_requests
from processors.probe import CHUNK_SEGMENTS
from sinks.catalog import Catalog, Segment

# (rendition, kind, codec, width, height, fps, chunk_count): a video_variants row as the probe declares it.
VariantRow = tuple[str, str, str, int | None, int | None, float | None, int]


@dataclass(frozen=True)
class PlannedVideo:
    video_id: str
    info: SourceInfo
    ladder: Ladder
    chunks: list[Chunk]

    @property
    def segment_count(self) -> int:
        """Segment rows of the whole video, every rendition."""
        return self.chunks[-1].segments.stop * len(self.variant_rows)

    @property
    def plan_json(self) -> str:
        return plan_to_json(self.ladder, len(self.chunks))

    @property
    def variant_rows(self) -> list[VariantRow]:
        rows: list[VariantRow] = [
            (rung.name, "video", rung.codec.upper(), rung.width, rung.height, float(rung.fps), len(self.chunks))
            for rung in self.ladder.rungs
        ]
        if self.ladder.audio is not None:
            rows.append((self.ladder.audio.name, "audio", "AAC", None, None, None, 1))
        return rows


def planned_video(video_id: str, duration_s: float, width: int = 640, height: int = 360) -> PlannedVideo:
    info = SourceInfo(width, height, Fraction(30), duration_s, True, "h264", "aac", None, "mov", "mov", 0)
    ladder = plan_ladder(info)
    return PlannedVideo(video_id, info, ladder, ladder_chunks(ladder, info, CHUNK_SEGMENTS))


async def record_plan(catalog: Catalog, video: PlannedVideo) -> None:
    """The rows the probe writes before it fans the jobs out (processors/probe.py), and the status it leaves."""
    info = video.info
    await catalog.record_plan(
        video.video_id, video.plan_json, info.demuxer, info.duration_s, info.width, info.height, 30.0
    )
    for row in video.variant_rows:
        await catalog.declare_variant(video.video_id, *row)
    await catalog.set_status(video.video_id, "processing", None, datetime.now(UTC))


@dataclass(frozen=True)
class Milestone:
    status: str
    announcement: int  # the number of the announcement that reached it
    only: frozenset[str] | None  # the renditions its manifests list, None for all
    segments: dict[str, list[Segment]]
    codecs: dict[str, str | None]


@dataclass
class Milestones:
    """Stands in for `package.publish_package` and `package.finish`: notes each milestone instead of writing
    manifests (no media exist), then awaits `reached` (which writes the status the agent reads back)."""

    reached: Callable[[str, Milestone], Awaitable[None]]
    announcement: int = 0  # set by the caller before each announcement
    seen: list[Milestone] = field(default_factory=list)

    async def publish_package(
        self,
        video_id: str,
        ladder: Any,
        variants: Mapping[str, Any],
        segments: Mapping[str, Sequence[Segment]],
        only: set[str] | None,
        status: str,
    ) -> None:
        milestone = Milestone(
            status,
            self.announcement,
            frozenset(only) if only is not None else None,
            {name: list(rows) for name, rows in segments.items()},
            {name: variant.codecs for name, variant in variants.items()},
        )
        self.seen.append(milestone)
        await self.reached(video_id, milestone)

    async def finish(self, video: Any, ladder: Any, variants: Any, segments: Any) -> None:
        await self.publish_package(video.video_id, ladder, variants, segments, None, "ready")


def announcements(video: PlannedVideo) -> list[dict[str, Any]]:
    """Every SegmentReady of the video, in the order its jobs are published."""
    source = Source(video.video_id, "uploads", f"{video.video_id}/source", video.info.demuxer)
    jobs = transcode_requests(source, video.ladder, video.chunks, datetime(2026, 3, 1, tzinfo=UTC))
    return [announcement(video, job, rendition) for job in jobs for rendition in job["renditions"]]


def announcement(video: PlannedVideo, job: dict[str, Any], rendition: dict[str, Any]) -> dict[str, Any]:
    name = rendition["name"]
    timescale = rendition["timescale"] or rendition["sample_rate"]
    segment_s = video.ladder.segment_duration
    end_s = Fraction(job["start"]["num"], job["start"]["den"]) + Fraction(
        job["duration"]["num"], job["duration"]["den"]
    )
    segments = []
    for number in range(job["first_segment"], job["first_segment"] + job["segment_count"]):
        start = number * segment_s
        duration = min(segment_s, end_s - start)
        size = int(rendition["bitrate_bps"] * duration / 8)
        segments.append(
            {
                "number": number,
                "start_ticks": int(start * timescale),
                "duration_ticks": int(duration * timescale),
                "start_s": float(start),
                "duration_s": float(duration),
                "size_bytes": size,
                "key": media_key(video.video_id, f"{name}/seg_{number:05d}.m4s"),
                "keyframe_offset": 0,
                "keyframe_size": size // 10,
            }
        )
    return {
        "video_id": video.video_id,
        "job_id": job["job_id"],
        "rendition": name,
        "chunk_index": job["chunk_index"],
        "init_key": media_key(video.video_id, f"{name}/init.mp4"),
        "init_sha256": hashlib.sha256(name.encode()).hexdigest(),
        "codecs": "mp4a.40.2" if rendition["codec"] == "AAC" else "avc1.64001f",
        "timescale": timescale,
        "segments": segments,
        "produced_at": datetime(2026, 3, 1, tzinfo=UTC),
    }
