"""Comments, replies and ratings applied to the real Cassandra (sinks/engagement.py), in a fresh keyspace.

The events are the ones the agent applies; each scenario is applied once, then again in full (a replay),
and sometimes out of order: the lists, reply counts and totals must be the same every time."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.cassandra import cassandra_session
from common.settings import Settings
from sinks.engagement import BUCKETS, EngagementStore, Totals, bucket_of
from sinks.migrate import migrate

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
async def store(live_servers: Settings) -> AsyncIterator[EngagementStore]:
    keyspace = f"test_engagement_{uuid.uuid4().hex[:10]}"
    cassandra = dataclasses.replace(live_servers.cassandra, keyspace=keyspace)
    await asyncio.to_thread(migrate, cassandra)
    session = await asyncio.to_thread(cassandra_session, cassandra)
    try:
        yield await asyncio.to_thread(EngagementStore, session)
    finally:
        await asyncio.to_thread(session.execute, f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        await asyncio.to_thread(session.cluster.shutdown)


def posted(video: str, n: int, parent: str | None = None, author: str = "acct-1") -> dict[str, Any]:
    return {
        "comment_id": f"{video}-c{n}",
        "video_id": video,
        "user_id": author,
        "profile_id": f"{author}-profile",
        "parent_id": parent,
        "body": f"comment {n}",
        "posted_at": T0 + timedelta(seconds=n),
    }


def removed(video: str, comment_id: str, at_s: int) -> dict[str, Any]:
    return {
        "comment_id": comment_id,
        "video_id": video,
        "removed_by": "acct-1",
        "removed_at": T0 + timedelta(seconds=at_s),
    }


def rated(video: str, viewer: str, value: str, at_s: int) -> dict[str, Any]:
    return {
        "video_id": video,
        "user_id": f"acct-of-{viewer}",
        "profile_id": viewer,
        "value": value,
        "rated_at": T0 + timedelta(seconds=at_s),
    }


async def apply_comments(store: EngagementStore, events: list[tuple[str, dict[str, Any]]]) -> None:
    for kind, event in events:
        await (store.post_comment(event) if kind == "post" else store.remove_comment(event))


async def all_pages(store: EngagementStore, video: str, sort: Any, limit: int) -> list[str]:
    ids: list[str] = []
    state = None
    while True:
        page, state = await store.comments(video, sort, limit, state)
        ids += [c.comment_id for c in page]
        if state is None:
            return ids


async def test_comment_threads_lists_and_counts_survive_a_replay(store: EngagementStore) -> None:
    video = f"v-{uuid.uuid4().hex[:8]}"
    c = [posted(video, n) for n in range(1, 8)]  # seven top-level comments, c1 oldest
    events: list[tuple[str, dict[str, Any]]] = [("post", e) for e in c]
    # c2 gets three replies, c5 two, c7 one; one of c2's replies is removed again.
    replies = [
        posted(video, 10 + i, parent=f"{video}-c{p}", author=f"acct-{i}") for i, p in enumerate([2, 2, 5, 2, 5, 7])
    ]
    events += [("post", r) for r in replies]
    events += [("remove", removed(video, replies[1]["comment_id"], 100))]
    # c4 is removed with its (one) reply.
    reply_to_4 = posted(video, 30, parent=f"{video}-c4")
    events += [("post", reply_to_4), ("remove", removed(video, f"{video}-c4", 101))]

    async def check() -> None:
        newest = await all_pages(store, video, "newest", 2)
        assert newest == [f"{video}-c{n}" for n in (7, 6, 5, 3, 2, 1)]
        top = await all_pages(store, video, "top", 4)
        assert top == [f"{video}-c{n}" for n in (5, 2, 7, 6, 3, 1)]  # 2, 2, 1 replies, then newest first
        first, state = await store.comments(video, "top", 3)
        assert [(x.comment_id, x.reply_count) for x in first] == [
            (f"{video}-c5", 2),
            (f"{video}-c2", 2),
            (f"{video}-c7", 1),
        ]
        assert state is not None
        thread, more = await store.replies(f"{video}-c2", 10)
        assert [r.comment_id for r in thread] == [replies[0]["comment_id"], replies[3]["comment_id"]]
        assert more is None
        assert thread[0].author_id == "acct-0-profile" and thread[0].body == "comment 10"
        # 6 live top-level comments + 5 live replies (c4's reply went with c4).
        assert (await store.totals(video)).comments == 6 + 5
        gone = await store.comment(f"{video}-c4")
        assert gone is not None and gone.removed and gone.body is None

    await apply_comments(store, events)
    await check()
    await apply_comments(store, events)  # the whole log again, as after a consumer-group reset
    await check()
    # A replay that starts in the middle (a crash after some events) changes nothing either.
    await apply_comments(store, events[len(events) // 2 :])
    await check()


async def test_a_reply_to_a_removed_thread_is_not_counted(store: EngagementStore) -> None:
    video = f"v-{uuid.uuid4().hex[:8]}"
    parent = posted(video, 1)
    await store.post_comment(parent)
    await store.remove_comment(removed(video, parent["comment_id"], 5))
    # A reply accepted just before the removal was applied arrives after it.
    late = posted(video, 4, parent=parent["comment_id"])
    await store.post_comment(late)
    assert (await store.totals(video)).comments == 0
    assert (await store.replies(parent["comment_id"], 10))[0] == []
    assert await all_pages(store, video, "newest", 10) == []
    assert await all_pages(store, video, "top", 10) == []


async def test_a_removal_before_its_post_keeps_the_comment_removed(store: EngagementStore) -> None:
    video = f"v-{uuid.uuid4().hex[:8]}"
    comment = posted(video, 1)
    await store.remove_comment(removed(video, comment["comment_id"], 9))
    await store.post_comment(comment)
    assert await all_pages(store, video, "newest", 10) == []
    assert (await store.totals(video)).comments == 0


async def test_ratings_are_changeable_removable_and_a_replay_does_not_double_them(store: EngagementStore) -> None:
    video = f"v-{uuid.uuid4().hex[:8]}"
    viewers = [f"profile-{i}" for i in range(40)]
    assert len({bucket_of(v) for v in viewers}) > 8, "the viewers spread over buckets"
    events = [rated(video, v, "LIKE" if i % 3 else "DISLIKE", i) for i, v in enumerate(viewers)]
    # Viewer 1 changes their like to a dislike, viewer 2 clears theirs.
    events += [rated(video, viewers[1], "DISLIKE", 100), rated(video, viewers[2], "NONE", 101)]
    likes = sum(1 for i in range(40) if i % 3) - 2
    dislikes = sum(1 for i in range(40) if not i % 3) + 1
    for event in events:
        await store.set_rating(event)
    assert await store.totals(video) == Totals(likes, dislikes, 0)
    for event in events:  # every event delivered twice
        await store.set_rating(event)
    assert await store.totals(video) == Totals(likes, dislikes, 0)
    # Out of order: the older events arrive after the newer ones; the newer still win.
    for event in reversed(events):
        await store.set_rating(event)
    assert await store.totals(video) == Totals(likes, dislikes, 0)
    assert await store.rating(video, viewers[1]) == "dislike"
    assert await store.rating(video, viewers[2]) is None
    assert await store.rating(video, viewers[4]) == "like"
    assert await store.rating(video, "nobody") is None
    rows = await asyncio.to_thread(
        store.session.execute, "SELECT bucket FROM engagement_totals WHERE video_id = %s", (video,)
    )
    assert {r.bucket for r in rows} <= set(range(BUCKETS))


async def test_an_old_rating_without_profile_counts_for_the_account(store: EngagementStore) -> None:
    video = f"v-{uuid.uuid4().hex[:8]}"
    # A RatingSet written before profiles existed decodes with profile_id None (schemas/history/RatingSet.v1).
    await store.set_rating(
        {"video_id": video, "user_id": "acct-9", "profile_id": None, "value": "LIKE", "rated_at": T0}
    )
    assert await store.rating(video, "acct-9") == "like"
    assert await store.totals(video) == Totals(1, 0, 0)


async def test_a_post_retried_under_the_same_id_keeps_its_first_place(store: EngagementStore) -> None:
    video = f"v-{uuid.uuid4().hex[:8]}"
    first = posted(video, 1)
    await store.post_comment(first)
    await store.post_comment(posted(video, 2))
    # The client retried its post (same Idempotency-Key, so the same id) a minute later.
    await store.post_comment({**first, "posted_at": first["posted_at"] + timedelta(minutes=1)})
    assert await all_pages(store, video, "newest", 10) == [f"{video}-c2", f"{video}-c1"]
    assert await all_pages(store, video, "top", 10) == [f"{video}-c2", f"{video}-c1"]
    assert (await store.totals(video)).comments == 2
    again = await store.comment(first["comment_id"])
    assert again is not None and again.posted_at == first["posted_at"]
