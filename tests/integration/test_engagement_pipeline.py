"""Engagement through the real Kafka, a real Faust control worker and Cassandra.

Comments, replies, a removal, ratings (changed, cleared) and views are published as the API publishes them
(producers/engagement_events.py), with poison messages among them; the rows and totals in Cassandra must
equal what the events say. Then the worker is killed with SIGKILL, every event is published a second time
(a replay), the worker restarts, and once it has consumed everything the rows and totals must be exactly
the same: nothing doubled."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from common.avro import AvroCodec
from common.kafka import consumer, durable_producer
from common.settings import Settings
from producers.engagement_events import EngagementEvents, RatingValue, video_partition
from producers.video_events import VideoEventPublisher
from tests.kafka_tools import end_offsets
from tests.scratch import WorkerRig as Rig
from tests.scratch import scratch_worker_rig

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOPICS = ("engagement.comments", "engagement.ratings", "engagement.views")


@pytest.fixture
def rig(live_servers: Settings, tmp_path: Path) -> Iterator[Rig]:
    yield from scratch_worker_rig(live_servers, "engagement", "control", tmp_path)


@dataclasses.dataclass
class Scenario:
    video: str
    other: str
    viewer: str
    comments: list[dict[str, Any]]
    removal: str
    ratings: list[tuple[str, str, RatingValue, datetime]]  # video, viewer, value, rated_at
    views: list[tuple[str, float, datetime]]  # video, position, viewed_at
    t0: datetime


def scenario() -> Scenario:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    video, other = f"v-{uuid.uuid4().hex[:8]}", f"v-{uuid.uuid4().hex[:8]}"
    comments = [{"comment_id": f"c{n}", "parent_id": None, "posted_at": t0 + timedelta(seconds=n)} for n in range(1, 6)]
    comments += [
        {"comment_id": f"r{n}", "parent_id": parent, "posted_at": t0 + timedelta(seconds=10 + n)}
        for n, parent in enumerate(["c2", "c2", "c4"])
    ]
    ratings: list[tuple[str, str, RatingValue, datetime]] = [
        (video, f"p{n}", "LIKE" if n % 4 else "DISLIKE", t0 + timedelta(seconds=n)) for n in range(24)
    ]
    ratings += [(other, f"p{n}", "LIKE", t0 + timedelta(seconds=n)) for n in range(3)]
    ratings += [(video, "p1", "DISLIKE", t0 + timedelta(seconds=60)), (video, "p2", "NONE", t0 + timedelta(seconds=61))]
    views = [
        (video, 30.0, t0 + timedelta(seconds=100)),
        (other, 12.0, t0 + timedelta(seconds=110)),
        (video, 5.0, t0 + timedelta(seconds=90)),  # an older report from another device, delivered late
    ]
    return Scenario(video, other, "profile-x", comments, "c3", ratings, views, t0)


async def publish(settings: Settings, s: Scenario) -> None:
    async with VideoEventPublisher(settings, delivery_timeout_s=20) as publisher:
        events = EngagementEvents(publisher, settings)
        for c in s.comments:
            delivered = await events.comment_posted(
                c["comment_id"],
                s.video,
                "acct-1",
                "profile-1",
                f"body of {c['comment_id']}",
                c["parent_id"],
                c["posted_at"],
            )
            # librdkafka's own choice for the video_id key: ratings computed alike land beside the comments.
            assert delivered.partition == video_partition(s.video, 6)
        await events.comment_removed(s.removal, s.video, "acct-1")
        for video, viewer, value, at in s.ratings:
            delivered = await events.rating_set(video, f"acct-{viewer}", viewer, value, at)
            assert delivered.partition == video_partition(video, 6), "one video's ratings share a partition"
        for video, position, at in s.views:
            await events.view_recorded(video, "session-1", "acct-x", s.viewer, position, position, at)


def publish_poison(settings: Settings) -> None:
    producer = durable_producer(settings.kafka)
    for topic in TOPICS:
        producer.produce(settings.topic(topic), key=b"poison", value=b"\x00not avro at all")
    # A well-formed event of another record on the comments topic is refused too.
    wrong = AvroCodec().encode(
        "RatingSet", {"video_id": "x", "user_id": "u", "value": "LIKE", "rated_at": datetime.now(UTC)}
    )
    producer.produce(settings.topic("engagement.comments"), key=b"poison", value=wrong)
    assert producer.flush(30) == 0


def totals(rig: Rig, video: str) -> tuple[int, int, int]:
    rows = rig.session.execute("SELECT likes, dislikes, comments FROM engagement_totals WHERE video_id = %s", (video,))
    rows = list(rows)
    return (sum(r.likes or 0 for r in rows), sum(r.dislikes or 0 for r in rows), sum(r.comments or 0 for r in rows))


def stored(rig: Rig, s: Scenario) -> dict[str, Any]:
    """Every engagement row of the scenario, as plain values."""
    q = rig.session.execute
    return {
        "totals": {v: totals(rig, v) for v in (s.video, s.other)},
        "newest": [
            r.comment_id for r in q("SELECT comment_id FROM comments_by_video_newest WHERE video_id = %s", (s.video,))
        ],
        "top": [
            (r.comment_id, r.reply_count)
            for r in q("SELECT comment_id, reply_count FROM comments_by_video_top WHERE video_id = %s", (s.video,))
        ],
        "replies": {
            p: [r.comment_id for r in q("SELECT comment_id FROM comment_replies WHERE parent_id = %s", (p,))]
            for p in ("c2", "c4")
        },
        "ratings": sorted(
            (r.video_id, r.viewer_id, r.value)
            for v in (s.video, s.other)
            for b in range(16)
            for r in q(
                "SELECT video_id, viewer_id, value FROM video_ratings WHERE video_id = %s AND bucket = %s", (v, b)
            )
        ),
        "progress": sorted(
            (r.video_id, r.position_s)
            for r in q("SELECT video_id, position_s FROM watch_progress WHERE viewer_id = %s", (s.viewer,))
        ),
    }


def expected(s: Scenario) -> dict[str, Any]:
    latest: dict[tuple[str, str], str] = {}
    for video, viewer, value, _at in sorted(s.ratings, key=lambda r: r[3]):
        latest[(video, viewer)] = value
    counted = {k: v for k, v in latest.items() if v != "NONE"}

    def count(video: str, value: str) -> int:
        return sum(1 for (v, _), x in counted.items() if v == video and x == value)

    return {
        "totals": {
            # c3 removed: four top-level comments and three replies.
            s.video: (count(s.video, "LIKE"), count(s.video, "DISLIKE"), 7),
            s.other: (3, 0, 0),
        },
        "newest": ["c5", "c4", "c2", "c1"],
        "top": [("c2", 2), ("c4", 1), ("c5", 0), ("c1", 0)],
        "replies": {"c2": ["r0", "r1"], "c4": ["r2"]},
        "ratings": sorted((v, p, x.lower()) for (v, p), x in counted.items()),
        "progress": sorted([(s.video, 30.0), (s.other, 12.0)]),
    }


def wait_for(rig: Rig, s: Scenario, timeout_s: float = 120) -> dict[str, Any]:
    want = expected(s)
    deadline = time.monotonic() + timeout_s
    got: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = stored(rig, s)
        if got == want:
            return got
        time.sleep(1)
    raise AssertionError(f"Cassandra never matched the events:\n got {got}\nwant {want}")


def wait_until_consumed(rig: Rig, timeout_s: float = 120) -> None:
    """Until the worker's group has committed every offset of the engagement topics."""
    group = f"{rig.settings.topic_prefix}vidplat-control"
    probe = consumer(group, rig.settings.kafka)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            behind = 0
            for topic in TOPICS:
                name = rig.settings.topic(topic)
                ends = end_offsets(rig.settings, name)
                committed = probe.committed([TopicPartition(name, p) for p in ends], timeout=10)
                behind += sum(max(0, ends[tp.partition] - max(tp.offset, 0)) for tp in committed)
            if behind == 0:
                return
            time.sleep(1)
        raise AssertionError(f"the worker is still {behind} messages behind")
    finally:
        probe.close()


def dead_letters(rig: Rig) -> list[dict[str, Any]]:
    codec = AvroCodec()
    found = []
    reader = consumer(f"test-dlq-{uuid.uuid4().hex[:8]}", rig.settings.kafka)
    try:
        for topic in TOPICS:
            name = rig.settings.topic(f"{topic}.dlq")
            ends = end_offsets(rig.settings, name)
            reader.assign([TopicPartition(name, p, 0) for p in ends])
            remaining = sum(ends.values())
            deadline = time.monotonic() + 30
            while remaining and time.monotonic() < deadline:
                message = reader.poll(0.5)
                if message is None or message.error():
                    continue
                found.append(codec.decode(message.value() or b""))
                remaining -= 1
    finally:
        reader.close()
    return found


@pytest.mark.timeout(600)
async def test_engagement_totals_survive_a_crash_and_a_full_replay(rig: Rig) -> None:
    s = scenario()
    worker = rig.worker("engagement-worker")
    await asyncio.to_thread(worker.start)
    try:
        await asyncio.to_thread(worker.wait_ready)
        await asyncio.to_thread(publish_poison, rig.settings)
        await publish(rig.settings, s)
        first = await asyncio.to_thread(wait_for, rig, s)
        await asyncio.to_thread(wait_until_consumed, rig)

        pid = worker.pid()
        assert pid is not None
        os.killpg(pid, signal.SIGKILL)
        await asyncio.to_thread(worker.stop)
        await publish(rig.settings, s)  # every event a second time, while the worker is down
        await asyncio.to_thread(worker.start)
        await asyncio.to_thread(worker.wait_ready)
        await asyncio.to_thread(wait_until_consumed, rig)
        again = await asyncio.to_thread(stored, rig, s)
    finally:
        await asyncio.to_thread(worker.stop)
    assert again == first
    print(f"totals after a crash and a replay of every event: {again['totals']}")

    letters = await asyncio.to_thread(dead_letters, rig)
    # Dead letters are at-least-once like everything else (a message redelivered around a rebalance is
    # parked again): count each original message once.
    parked = {
        (x["original_topic"].removeprefix(rig.settings.topic_prefix), x["partition"], x["offset"]) for x in letters
    }
    assert sorted(topic for topic, _, _ in parked) == sorted([*TOPICS, "engagement.comments"])
    # Other stages read engagement.views too (view counts); each parks what it cannot read.
    assert {"record_comments", "record_ratings", "record_views"} <= {letter["agent"] for letter in letters}
    assert all(letter["key"] == b"poison" for letter in letters)
