"""Stage: engagement.* → Cassandra. Comments and replies, ratings, and views (watch progress per profile).

    PROCESSOR_ROLE=control faust -A processors.app worker

Agents:

* `record_comments` — `engagement.comments` (CommentPosted and CommentRemoved, keyed by video): the comment
  rows, the newest / top lists, reply counts and the video's comment count (sinks/engagement.py).
* `record_ratings` — `engagement.ratings` (RatingSet, keyed per (video, viewer), partitioned by video): the
  viewer's rating row and the recount of like/dislike totals.
* `record_views` — `engagement.views` (ViewRecorded, keyed by video): the profile's resume position in
  `watch_progress`, the same row the QoE agent keeps from player heartbeats, so a position reported either
  way follows the viewer to their next device; history and "continue watching" read that table.

Every write is idempotent (deterministic keys, event-time cell timestamps, totals recounted from rows), so
at-least-once delivery and replays after a crash leave the same rows. A message that does not decode goes to
`<topic>.dlq` and the partition keeps flowing; a Cassandra failure is waited out (processors/retry.py).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, cast

import faust
from prometheus_client import Counter

from common import topics
from common.cassandra import shared_session
from processors.app import app, raw_topic
from processors.dead_letters import decode_one_of, decoded_records
from processors.retry import until_applied
from sinks.engagement import EngagementStore
from sinks.qoe import QoeStore

log = logging.getLogger(__name__)

# A batch of ratings: at most this many, or what arrived within this time.
RATING_BATCH_MAX = 500
RATING_BATCH_WITHIN_S = 0.25

ENGAGEMENT_EVENTS = Counter("engagement_events_total", "Engagement events applied to Cassandra", ["record"])

comments_topic = raw_topic(topics.ENGAGEMENT_COMMENTS)
ratings_topic = raw_topic(topics.ENGAGEMENT_RATINGS)
views_topic = raw_topic(topics.ENGAGEMENT_VIEWS)


@functools.cache
def store() -> EngagementStore:
    return EngagementStore(shared_session())


@functools.cache
def progress_store() -> QoeStore:
    return QoeStore(shared_session())


@app.agent(comments_topic)
async def record_comments(stream: faust.StreamT) -> None:
    async for _event, record, value in decoded_records(
        app, stream, ("CommentPosted", "CommentRemoved"), "record_comments"
    ):
        apply = store().post_comment if record == "CommentPosted" else store().remove_comment
        await until_applied(functools.partial(apply, value), f"{record} {value['comment_id']}")
        ENGAGEMENT_EVENTS.labels(record).inc()


@app.agent(ratings_topic)
async def record_ratings(stream: faust.StreamT) -> None:
    """Ratings come in bursts on popular videos: a batch writes every viewer's row, then recounts each touched
    bucket once, and only then acks the batch's events. noack_take, not take_events: take_events acks a batch
    in a ``finally``, so a worker stopped mid-batch (SIGTERM: agents stop before the consumer's last commit)
    would commit ratings it never wrote. Here a batch cut short is not acked and is replayed whole (rows
    rewritten identically, then recounted)."""
    batches = cast(faust.Stream, stream)  # the Stream class; StreamT declares neither noack_take nor ack
    async for events in batches.noack_take(RATING_BATCH_MAX, within=RATING_BATCH_WITHIN_S):
        touched: set[tuple[str, int]] = set()
        for event in events:
            found = await decode_one_of(app, event, ("RatingSet",), "record_ratings")
            if found is None:
                continue
            value = found[1]
            await until_applied(functools.partial(write_rating, value, touched), f"rating of {value['video_id']}")
            ENGAGEMENT_EVENTS.labels(found[0]).inc()
        for video_id, bucket in sorted(touched):
            await until_applied(functools.partial(store().recount_ratings, video_id, bucket), f"totals of {video_id}")
        for event in events:
            await batches.ack(event)


async def write_rating(value: dict[str, Any], touched: set[tuple[str, int]]) -> None:
    touched.add(await store().write_rating(value))


@app.agent(views_topic)
async def record_views(stream: faust.StreamT) -> None:
    async for _event, record, value in decoded_records(app, stream, ("ViewRecorded",), "record_views"):
        await until_applied(functools.partial(record_view, value), f"view of {value['video_id']}")
        ENGAGEMENT_EVENTS.labels(record).inc()


async def record_view(value: dict[str, Any]) -> None:
    """The profile's resume position (latest by event time wins); an anonymous view has nobody to follow."""
    viewer = value.get("profile_id") or value.get("user_id")
    if viewer:
        await progress_store().write_progress(viewer, value["video_id"], value["position_s"], value["viewed_at"])
