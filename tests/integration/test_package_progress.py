"""The manifest agent's held progress against the real Cassandra: at each milestone the segments it lists, in
their order, and the codecs are exactly what a read of Cassandra returns at that moment (what the agent used to
read on every announcement), through redelivered and out-of-order announcements and a restart mid-video.

Milestones are recorded instead of written (no media exist); their status goes to Cassandra so the agent reads
it back as it would."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from common.cassandra import cassandra_session
from common.settings import Settings
from processors import package
from sinks.catalog import Catalog
from tests.package_tools import Milestone, Milestones, announcements, planned_video, record_plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def catalog(live_servers: Settings) -> Iterator[Catalog]:
    session = cassandra_session(live_servers.cassandra)
    yield Catalog(session)
    session.cluster.shutdown()


async def test_listed_segments_are_what_cassandra_holds(
    catalog: Catalog, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = planned_video(f"package-{unique}", 100.0)
    await record_plan(catalog, video)

    async def reached(video_id: str, milestone: Milestone) -> None:
        rows = await catalog.variants(video_id)
        assert list(milestone.segments) == [row.rendition for row in rows]
        assert milestone.segments == {row.rendition: await catalog.segments(video_id, row.rendition) for row in rows}
        assert milestone.codecs == {row.rendition: row.codecs for row in rows}
        await catalog.set_status(video_id, milestone.status, None, datetime.now(UTC))

    milestones = Milestones(reached)
    monkeypatch.setattr(package, "catalog", lambda: catalog)
    monkeypatch.setattr(package, "PROGRESS", package.Progress(package.PROGRESS_VIDEOS))
    monkeypatch.setattr(package, "publish_package", milestones.publish_package)
    monkeypatch.setattr(package, "finish", milestones.finish)

    events = announcements(video)
    rng = random.Random(3)
    messy = events + rng.sample(events, 15)
    rng.shuffle(messy)
    try:
        for number, ready in enumerate(messy):
            if number == len(messy) // 2:
                package.PROGRESS.clear()  # a restart mid-video: the next announcement reads Cassandra again
            await package.assemble(ready)
        assert [m.status for m in milestones.seen] == ["playable", "ready"]
        assert video.video_id not in package.PROGRESS
    finally:
        await catalog.remove_renditions(video.video_id)
