"""processors/package.py keeps each video's progress in memory: an announcement reads the video row and nothing
else however long the video is, and what it decides (which milestones, at which announcement, listing which
segments) is what a full re-read of the store after every announcement decides, through redelivery, disorder,
restarts and rebalances.

The store is an in-memory fake of sinks.catalog.Catalog that counts reads; milestones and status changes are
recorded instead of written (Kafka, S3 and media are not needed here)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from processors import package
from sinks.catalog import Segment
from tests.package_tools import Milestone, Milestones, PlannedVideo, announcements, planned_video

READS = ("get_video", "variants", "segments")


class FakeCatalog:
    """Rows as Cassandra keys them (variants by rendition, segments by rendition and number); reads counted."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.videos: dict[str, SimpleNamespace] = {}
        self.variant_rows: dict[str, dict[str, SimpleNamespace]] = {}
        self.segment_rows: dict[tuple[str, str], dict[int, Segment]] = {}
        self.reads: Counter[str] = Counter()
        self.statuses: list[tuple[str, str, str | None]] = []
        self.fail_next_write = False

    def plan(self, video: PlannedVideo) -> PlannedVideo:
        """The rows the probe leaves: the video with its plan, processing, and its declared renditions."""
        info = video.info
        self.videos[video.video_id] = SimpleNamespace(
            video_id=video.video_id, status="processing", plan=video.plan_json, width=info.width, height=info.height
        )
        self.variant_rows[video.video_id] = {
            name: SimpleNamespace(rendition=name, chunk_count=chunk_count, init_sha256=None, codecs=None)
            for name, *_, chunk_count in video.variant_rows
        }
        return video

    async def get_video(self, video_id: str) -> Any | None:
        self.reads["get_video"] += 1
        video = self.videos.get(video_id)
        return SimpleNamespace(**vars(video)) if video else None

    async def variants(self, video_id: str) -> list[Any]:
        self.reads["variants"] += 1
        rows = self.variant_rows.get(video_id, {})
        return [SimpleNamespace(**vars(rows[name])) for name in sorted(rows)]

    async def record_variant_init(
        self, video_id: str, rendition: str, init_sha256: str, codecs: str, timescale: int
    ) -> None:
        row = self.variant_rows[video_id][rendition]
        row.init_sha256, row.codecs = init_sha256, codecs

    async def record_segments(self, video_id: str, segments: list[Segment]) -> None:
        if self.fail_next_write:
            self.fail_next_write = False
            raise ConnectionError("write timed out")
        for segment in segments:
            self.segment_rows.setdefault((video_id, segment.rendition), {})[segment.number] = segment

    async def segments(self, video_id: str, rendition: str) -> list[Segment]:
        self.reads["segments"] += 1
        rows = self.segment_rows.get((video_id, rendition), {})
        return [rows[number] for number in sorted(rows)]

    async def publish_status(self, video_id: str, status: str, reason: str | None = None) -> None:
        """Stands in for processors.status.publish_status: the status row, and a note of the event."""
        self.statuses.append((video_id, status, reason))
        self.videos[video_id].status = status

    async def reached(self, video_id: str, milestone: Milestone) -> None:
        await self.publish_status(video_id, milestone.status)

    def all_reads(self) -> int:
        return sum(self.reads[name] for name in READS)


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCatalog]:
    fake = FakeCatalog()
    monkeypatch.setattr(package, "catalog", lambda: fake)
    monkeypatch.setattr(package, "publish_status", fake.publish_status)
    monkeypatch.setattr(package, "PROGRESS", package.Progress(package.PROGRESS_VIDEOS))
    yield fake


@pytest.fixture
def milestones(store: FakeCatalog, monkeypatch: pytest.MonkeyPatch) -> Milestones:
    milestones = Milestones(store.reached)
    monkeypatch.setattr(package, "publish_package", milestones.publish_package)
    monkeypatch.setattr(package, "finish", milestones.finish)
    return milestones


async def replay(
    store: FakeCatalog,
    milestones: Milestones,
    events: list[dict[str, Any]],
    *,
    first: int = 0,
    reread_each: bool = False,
) -> list[int]:
    """Feed the announcements (numbered from `first`) to the agent's step; reads of the store per announcement."""
    reads = []
    for number, ready in enumerate(events, start=first):
        if reread_each:
            package.PROGRESS.clear()  # every announcement reads the whole video again, as the agent used to
        milestones.announcement = number
        before = store.all_reads()
        await package.assemble(ready)
        reads.append(store.all_reads() - before)
    return reads


@pytest.mark.parametrize("duration_s", [60.0, 600.0, 2400.0])
async def test_an_announcement_reads_the_video_row_only_whatever_the_video_length(
    store: FakeCatalog, milestones: Milestones, duration_s: float
) -> None:
    video = store.plan(planned_video("v1", duration_s))
    events = announcements(video)

    reads = await replay(store, milestones, events)

    # The first announcement reads the video, its renditions and each rendition's segments once; every later
    # one, up to the last chunk and through both milestones, reads the video row and nothing else.
    renditions = len(video.variant_rows)
    assert reads[0] == 1 + 1 + renditions
    assert reads[1:] == [1] * (len(events) - 1)
    assert store.reads["segments"] == renditions
    assert [(m.status, m.announcement) for m in milestones.seen] == [
        ("playable", len(video.chunks)),  # the lowest rung's chunks, then the whole audio
        ("ready", len(events) - 1),
    ]
    ready = milestones.seen[-1].segments
    assert sum(len(rows) for rows in ready.values()) == video.segment_count
    assert ready == {name: await store.segments("v1", name) for name in ready}
    assert "v1" not in package.PROGRESS  # forgotten once ready


async def test_same_milestones_as_a_full_reread_through_redelivery_disorder_restart_and_rebalance(
    store: FakeCatalog, milestones: Milestones
) -> None:
    events = announcements(store.plan(planned_video("v1", 240.0)))
    rng = random.Random(7)
    messy = events + rng.sample(events, 40)  # redelivered announcements
    rng.shuffle(messy)

    reread = await replay(store, milestones, messy, reread_each=True)
    expected = milestones.seen
    assert [m.status for m in expected] == ["playable", "ready"]

    store.reset()  # the same announcements again, on a fresh store, keeping progress
    store.plan(planned_video("v1", 240.0))
    milestones.seen = []
    third, half = len(messy) // 3, len(messy) // 2
    kept = await replay(store, milestones, messy[:third])
    package.PROGRESS.clear()  # the worker restarts mid-video
    kept += await replay(store, milestones, messy[third:half], first=third)
    await package.forget_progress_on_rebalance(package.app, set())  # a rebalance hands the partition back
    assert "v1" not in package.PROGRESS
    kept += await replay(store, milestones, messy[half:], first=half)

    # The same milestones at the same announcements, listing the same segments with the same codecs.
    assert milestones.seen == expected
    assert sum(kept) < sum(reread) / 4
    # Redelivered after `ready`: the rows are written again, nothing is republished, nothing is held.
    await replay(store, milestones, events[:3])
    assert len(milestones.seen) == 2
    assert "v1" not in package.PROGRESS


async def test_progress_is_bounded_and_forgotten_when_ready(
    store: FakeCatalog, milestones: Milestones, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(package, "PROGRESS", package.Progress(2))
    videos = [announcements(store.plan(planned_video(f"v{n}", 40.0))) for n in range(4)]
    interleaved = [ready for round_ in zip(*videos, strict=True) for ready in round_]

    for ready in interleaved:
        await package.assemble(ready)
        assert len(package.PROGRESS) <= 2

    # Evicted videos were read again when they announced again, and every one still finished once.
    assert [status for _, status, _ in store.statuses].count("ready") == 4
    assert len(package.PROGRESS) == 0


async def test_a_failed_step_forgets_the_video_and_the_retry_reads_it_again(
    store: FakeCatalog, milestones: Milestones
) -> None:
    events = announcements(store.plan(planned_video("v1", 40.0)))
    await package.assemble(events[0])
    assert "v1" in package.PROGRESS

    store.fail_next_write = True
    with pytest.raises(ConnectionError):
        await package.assemble(events[1])
    assert "v1" not in package.PROGRESS

    before = store.reads["variants"]
    await replay(store, milestones, events[1:])
    assert store.reads["variants"] == before + 1
    assert [m.status for m in milestones.seen] == ["playable", "ready"]


async def test_a_codec_mismatch_fails_the_video_and_forgets_it(store: FakeCatalog, milestones: Milestones) -> None:
    events = announcements(store.plan(planned_video("v1", 40.0)))
    await package.assemble(events[0])
    await package.assemble({**events[1], "init_sha256": "0" * 64})

    assert store.statuses == [("v1", "failed", "rendition 240p: chunks disagree on the codec setup")]
    assert "v1" not in package.PROGRESS
    reads = await replay(store, milestones, events[2:])  # a failed video is ignored: the video row, nothing else
    assert reads == [1] * len(events[2:])
    assert milestones.seen == []


async def test_a_deleted_video_is_ignored_and_forgotten(store: FakeCatalog, milestones: Milestones) -> None:
    events = announcements(store.plan(planned_video("v1", 40.0)))
    await package.assemble(events[0])
    store.videos["v1"].status = "deleted"
    await package.assemble(events[1])

    assert "v1" not in package.PROGRESS
    assert sorted(store.segment_rows[("v1", "240p")]) == [0, 1]  # only the first announcement's rows
