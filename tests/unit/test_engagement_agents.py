"""The engagement agents in-process (Faust's test_context, no broker): each record of a topic goes to its
handler in order, and anything else — garbage, or a well-formed event of another topic — is parked on the
dead-letter topic while the stream keeps flowing. Partitioning of ratings and old RatingSet messages too."""

from __future__ import annotations

import io
import zlib
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest
from cassandra import OperationTimedOut
from cassandra.cluster import NoHostAvailable

from common.avro import AvroCodec, schema_version
from processors import dead_letters, engagement, retry
from producers.engagement_events import rating_key, video_partition

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CODEC = AvroCodec()
POSTED = {"comment_id": "c1", "video_id": "v1", "user_id": "a1", "profile_id": "p1", "body": "hi", "posted_at": T}
REMOVED = {"comment_id": "c1", "video_id": "v1", "removed_by": "a1", "removed_at": T}
RATED = {"video_id": "v1", "user_id": "a1", "profile_id": "p1", "value": "LIKE", "rated_at": T}
VIEWED = {
    "video_id": "v1",
    "session_id": "s1",
    "user_id": "a1",
    "profile_id": "p1",
    "watched_s": 10.0,
    "position_s": 12.5,
    "viewed_at": T,
}


class FakeStore:
    """Records what the agents ask of Cassandra."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def post_comment(self, value: dict[str, Any]) -> None:
        self.calls.append(("post", value["comment_id"]))

    async def remove_comment(self, value: dict[str, Any]) -> None:
        self.calls.append(("remove", value["comment_id"]))

    async def write_rating(self, value: dict[str, Any]) -> tuple[str, int]:
        self.calls.append(("rating", (value["profile_id"], value["value"])))
        return value["video_id"], 0

    async def recount_ratings(self, video_id: str, bucket: int) -> None:
        self.calls.append(("recount", (video_id, bucket)))

    async def write_progress(self, viewer: str, video_id: str, position_s: float, at: datetime) -> None:
        self.calls.append(("progress", (viewer, video_id, position_s, at)))


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeStore, list[tuple[str, str]]]:
    fake = FakeStore()
    parked: list[tuple[str, str]] = []

    async def dead_letter(app: Any, event: Any, error: BaseException, agent: str, payload: bytes | None = None) -> None:
        parked.append((agent, str(error)))

    monkeypatch.setattr(engagement, "store", lambda: fake)
    monkeypatch.setattr(engagement, "progress_store", lambda: fake)
    monkeypatch.setattr(dead_letters, "dead_letter", dead_letter)
    return fake, parked


async def test_comments_posts_and_removals_in_order_poison_parked(fakes: tuple[FakeStore, list[Any]]) -> None:
    fake, parked = fakes
    async with engagement.record_comments.test_context() as agent:
        await agent.put(CODEC.encode("CommentPosted", POSTED))
        await agent.put(b"\x00\x00garbage")
        await agent.put(CODEC.encode("RatingSet", RATED))  # decodes, but is no comment event
        await agent.put(CODEC.encode("CommentRemoved", REMOVED))
    assert fake.calls == [("post", "c1"), ("remove", "c1")]
    assert [agent for agent, _ in parked] == ["record_comments", "record_comments"]
    assert "RatingSet" in parked[1][1]


async def test_ratings_and_views_reach_their_stores(fakes: tuple[FakeStore, list[Any]]) -> None:
    fake, parked = fakes
    async with engagement.record_ratings.test_context() as agent:
        await agent.put(CODEC.encode("RatingSet", RATED))
        await agent.put(CODEC.encode("RatingSet", {**RATED, "value": "NONE"}))
    async with engagement.record_views.test_context() as agent:
        await agent.put(CODEC.encode("ViewRecorded", VIEWED))
        await agent.put(CODEC.encode("ViewRecorded", {**VIEWED, "profile_id": None}))  # the account's own
        await agent.put(CODEC.encode("ViewRecorded", {**VIEWED, "profile_id": None, "user_id": None}))  # nobody
    ratings = [c for c in fake.calls if c[0] in ("rating", "recount")]
    # Rows first, then one recount per touched bucket of the batch (both events usually share a batch).
    assert [c for c in ratings if c[0] == "rating"] == [("rating", ("p1", "LIKE")), ("rating", ("p1", "NONE"))]
    assert ratings[-1] == ("recount", ("v1", 0)) and ratings[1] in (("rating", ("p1", "NONE")), ("recount", ("v1", 0)))
    assert [c for c in fake.calls if c[0] == "progress"] == [
        ("progress", ("p1", "v1", 12.5, T)),
        ("progress", ("a1", "v1", 12.5, T)),
    ]
    assert parked == []


def test_a_rating_written_before_profiles_still_decodes() -> None:
    old = schema_version("RatingSet.v1")
    stream = io.BytesIO()
    fastavro.schemaless_writer(stream, old.parsed, {k: v for k, v in RATED.items() if k != "profile_id"})
    message = b"\xc3\x01" + old.fingerprint + stream.getvalue()
    assert CODEC.decode(message) == {**RATED, "profile_id": None}
    # And today's message reads with the old schema (an older consumer), without the profile.
    assert CODEC.decode(CODEC.encode("RatingSet", RATED), "RatingSet.v1") == {
        k: v for k, v in RATED.items() if k != "profile_id"
    }


def test_ratings_are_keyed_per_viewer_and_placed_by_video() -> None:
    assert rating_key("v1", "p1") == "v1/p1"
    videos = [f"video-{n}" for n in range(200)]
    placed = {video_partition(v, 6) for v in videos}
    assert placed == set(range(6))  # spread over every partition
    # librdkafka's consistent partitioner: CRC-32 of the key, modulo the partition count.
    assert all(video_partition(v, 6) == zlib.crc32(v.encode()) % 6 for v in videos)


async def test_a_cassandra_failure_is_retried_not_skipped(
    fakes: tuple[FakeStore, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, parked = fakes
    monkeypatch.setattr(retry, "RETRY_FIRST_S", 0.01)
    failures = [OperationTimedOut("first try"), NoHostAvailable("second try", {})]
    post = fake.post_comment

    async def flaky(value: dict[str, Any]) -> None:
        if failures:
            raise failures.pop(0)
        await post(value)

    monkeypatch.setattr(fake, "post_comment", flaky)
    async with engagement.record_comments.test_context() as agent:
        await agent.put(CODEC.encode("CommentPosted", POSTED))
        await agent.put(CODEC.encode("CommentRemoved", REMOVED))
    assert fake.calls == [("post", "c1"), ("remove", "c1")]  # in order, the post applied once it could be
    assert parked == []
