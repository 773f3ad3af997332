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
`<topic>.dlq` and the partition keeps flowing.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import Counter

from common.avro import default_codec
from common.cassandra import cassandra_session
from common.settings import load_settings
from processors.app import app, topic_name
from processors.dead_letters import dead_letter
from sinks.engagement import EngagementStore
from sinks.qoe import QoeStore

log = logging.getLogger(__name__)

ENGAGEMENT_EVENTS = Counter("engagement_events_total", "Engagement events applied to Cassandra", ["record"])

comments_topic = app.topic(topic_name("engagement.comments"), key_serializer="raw", value_serializer="raw")
ratings_topic = app.topic(topic_name("engagement.ratings"), key_serializer="raw", value_serializer="raw")
views_topic = app.topic(topic_name("engagement.views"), key_serializer="raw", value_serializer="raw")


@functools.cache
def _session() -> Any:
    return cassandra_session(load_settings().cassandra)


@functools.cache
def store() -> EngagementStore:
    return EngagementStore(_session())


@functools.cache
def progress_store() -> QoeStore:
    return QoeStore(_session())


async def decoded_records(
    stream: faust.StreamT, records: tuple[str, ...], agent: str
) -> AsyncIterator[tuple[EventT, str, dict[str, Any]]]:
    """Yield (event, record name, value) for each message of one of ``records``; dead-letter the others.

    Like processors.dead_letters.decoded, for a topic that carries more than one record."""
    codec = default_codec()
    async for event in stream.events():
        raw = event.value
        found: tuple[str, dict[str, Any]] | None = None
        errors = []
        for record in records:
            try:
                found = record, codec.decode(raw, record)
                break
            except ValueError as exc:  # UndecodableMessage: not this record, or not decodable at all
                errors.append(exc)
        if found is None:
            await dead_letter(app, event, errors[-1], agent, raw if isinstance(raw, bytes) else None)
            continue
        yield event, *found


@app.agent(comments_topic)
async def record_comments(stream: faust.StreamT) -> None:
    async for _event, record, value in decoded_records(stream, ("CommentPosted", "CommentRemoved"), "record_comments"):
        if record == "CommentPosted":
            await store().post_comment(value)
        else:
            await store().remove_comment(value)
        ENGAGEMENT_EVENTS.labels(record).inc()


@app.agent(ratings_topic)
async def record_ratings(stream: faust.StreamT) -> None:
    async for _event, record, value in decoded_records(stream, ("RatingSet",), "record_ratings"):
        await store().set_rating(value)
        ENGAGEMENT_EVENTS.labels(record).inc()


@app.agent(views_topic)
async def record_views(stream: faust.StreamT) -> None:
    async for _event, record, value in decoded_records(stream, ("ViewRecorded",), "record_views"):
        await record_view(value)
        ENGAGEMENT_EVENTS.labels(record).inc()


async def record_view(value: dict[str, Any]) -> None:
    """The profile's resume position (latest by event time wins); an anonymous view has nobody to follow."""
    viewer = value.get("profile_id") or value.get("user_id")
    if viewer:
        await progress_store().write_progress(viewer, value["video_id"], value["position_s"], value["viewed_at"])
