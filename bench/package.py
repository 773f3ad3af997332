"""The manifest agent's cost per announcement over a long video's life: every SegmentReady of a 2-hour video
through processors/package.py against the real Cassandra, per tenth of the video.

    .venv/bin/python -m bench.package [--hours 2] [--reread-every 25]

Needs Kafka and Cassandra (`make up`). Runs on a scratch platform (tests/scratch.py: a fresh keyspace and topic
prefix, both removed afterwards). The video is planned by the platform's planner from a 1080p30 source (six H.264
rungs and the audio, 4 s segments, the probe's 2 segments per chunk: 900 chunks, 5,401 announcements, 12,600
segment rows for 2 hours) and announced in the order its jobs are published: the lowest rung chunk by chunk, the
whole audio track in one announcement, then the other rungs chunk by chunk.

Each announcement goes through `package.assemble` as the agent runs it; only the milestones' output is left
out (no manifests, storyboard, MP4 or status events: no media exist, and they happen twice per video), the
status they set is written so the agent sees it. Side by side in the same run, every Nth announcement is made
to forget the video first, so it reads the whole video from Cassandra again: what every announcement did before
progress was kept (it also read the renditions a second time). The point is that the kept path is as cheap at
the last chunk as at the first while the re-read grows with the video. Last, the memory one video's progress
takes when every segment is held (tracemalloc).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import tracemalloc
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from cassandra.cluster import Session

from common.cassandra import cassandra_session
from common.settings import load_settings
from processors import package
from sinks.catalog import Catalog, Segment
from tests.package_tools import Milestone, Milestones, announcements, planned_video, record_plan
from tests.scratch import scratch_platform


class CountingCatalog:
    """The catalogue as the agent uses it, counting its reads and the rows they return."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.reads = 0
        self.rows = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.catalog, name)  # the writes, uncounted

    async def get_video(self, video_id: str) -> Any | None:
        row = await self.catalog.get_video(video_id)
        self.reads, self.rows = self.reads + 1, self.rows + (row is not None)
        return row

    async def variants(self, video_id: str) -> list[Any]:
        rows = await self.catalog.variants(video_id)
        self.reads, self.rows = self.reads + 1, self.rows + len(rows)
        return rows

    async def segments(self, video_id: str, rendition: str) -> list[Segment]:
        rows = await self.catalog.segments(video_id, rendition)
        self.reads, self.rows = self.reads + 1, self.rows + len(rows)
        return rows


@dataclass(frozen=True)
class Sample:
    reread: bool
    seconds: float
    reads: int
    rows: int


async def replay(session: Session, hours: float, reread_every: int) -> None:
    catalog = Catalog(session)
    counting = CountingCatalog(catalog)

    async def reached(video_id: str, milestone: Milestone) -> None:
        await catalog.set_status(video_id, milestone.status, None, datetime.now(UTC))

    milestones = Milestones(reached)
    video = planned_video(f"bench-{uuid.uuid4().hex[:8]}", hours * 3600, 1920, 1080)
    events = announcements(video)
    await record_plan(catalog, video)
    print(
        f"video: {hours:g} h, {len(video.ladder.rungs)} rungs + audio, {float(video.ladder.segment_duration):g} s"
        f" segments, {len(video.chunks)} chunks, {len(events)} announcements, {video.segment_count} segment rows"
    )

    samples: list[Sample] = []
    with (
        mock.patch.object(package, "catalog", lambda: counting),
        mock.patch.object(package, "publish_package", milestones.publish_package),
        mock.patch.object(package, "finish", milestones.finish),
        mock.patch.object(package, "PROGRESS", package.Progress(package.PROGRESS_VIDEOS)),
    ):
        for number, ready in enumerate(events):
            reread = number % reread_every == 0
            if reread:
                package.PROGRESS.forget(video.video_id)
            milestones.announcement = number
            reads, rows = counting.reads, counting.rows
            began = time.perf_counter()
            await package.assemble(ready)
            samples.append(Sample(reread, time.perf_counter() - began, counting.reads - reads, counting.rows - rows))
        held = await held_bytes(video.video_id)
    for milestone in milestones.seen:
        listed = sum(len(milestone.segments[name]) for name in milestone.only or milestone.segments)
        print(f"milestone: {milestone.status} at announcement {milestone.announcement + 1}, {listed} segments listed")
    report(samples, reread_every)
    print(
        f"progress of this video with every segment held: {held / 2**20:.1f} MiB"
        f" (PACKAGE_PROGRESS_VIDEOS={package.PROGRESS_VIDEOS} videos at most per worker)"
    )


async def held_bytes(video_id: str) -> int:
    """Memory of the video's progress once every segment is held: traced before and after it is forgotten."""
    tracemalloc.start()
    try:
        progress = await package.PROGRESS.of(video_id)
        await progress.load_segments()
        del progress
        # The loop's handle that resumed this step still holds the read's results until the next step.
        await asyncio.sleep(0)
        gc.collect()
        with_progress = tracemalloc.get_traced_memory()[0]
        package.PROGRESS.forget(video_id)
        await asyncio.sleep(0)
        gc.collect()
        return with_progress - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def report(samples: list[Sample], reread_every: int) -> None:
    print(
        f"\nper announcement, by tenth of the video (announcements in publication order); 'kept' is the agent,"
        f" 're-read' every {reread_every}th announcement reading the whole video again as before"
    )
    header = (
        f"{'tenth':>6} {'announcements':>13} | {'kept: mean ms':>13} {'p50 ms':>7} {'max ms':>7} {'reads':>5}"
        f" {'rows':>5} | {'re-read: n':>10} {'mean ms':>8} {'reads':>5} {'rows':>6} | {'re-read/kept':>12}"
    )
    print(header)
    print("-" * len(header))
    tenths: list[tuple[float, float, float]] = []
    for tenth in range(10):
        lo, hi = len(samples) * tenth // 10, len(samples) * (tenth + 1) // 10
        part = samples[lo:hi]
        kept = [s for s in part if not s.reread]
        again = [s for s in part if s.reread]
        kept_ms = statistics.fmean(s.seconds for s in kept) * 1000
        again_ms = statistics.fmean(s.seconds for s in again) * 1000 if again else float("nan")
        kept_p50_ms = statistics.median(s.seconds for s in kept) * 1000
        tenths.append((kept_ms, kept_p50_ms, again_ms))
        print(
            f"{tenth * 10:>3}-{(tenth + 1) * 10:>2}% {f'{lo + 1}-{hi}':>13} |"
            f" {kept_ms:>13.2f} {kept_p50_ms:>7.2f}"
            f" {max(s.seconds for s in kept) * 1000:>7.1f} {statistics.fmean(s.reads for s in kept):>5.2f}"
            f" {statistics.fmean(s.rows for s in kept):>5.2f} |"
            f" {len(again):>10} {again_ms:>8.2f} {statistics.fmean(s.reads for s in again) if again else 0:>5.1f}"
            f" {statistics.fmean(s.rows for s in again) if again else 0:>6.0f} | {again_ms / kept_ms:>11.1f}x"
        )
    (first_kept, first_p50, first_again), (last_kept, last_p50, last_again) = tenths[0], tenths[-1]
    print(
        f"\nlast tenth / first tenth, ms per announcement: kept {last_kept / first_kept:.2f}x (mean),"
        f" {last_p50 / first_p50:.2f}x (p50); re-read {last_again / first_again:.1f}x (mean)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=2.0, help="length of the video (default 2)")
    parser.add_argument(
        "--reread-every", type=int, default=25, help="every Nth announcement re-reads the whole video (default 25)"
    )
    args = parser.parse_args()
    for settings in scratch_platform(load_settings(), "bench-package"):
        session = cassandra_session(settings.cassandra)
        try:
            asyncio.run(replay(session, args.hours, args.reread_every))
        finally:
            session.cluster.shutdown()


if __name__ == "__main__":
    main()
