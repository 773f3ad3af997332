"""Stage: engagement.views → view counts, trending hours and item-item co-watching in Cassandra.

    PROCESSOR_ROLE=control faust -A processors.app worker   # runs with the control worker's agents

One stream of view events (``ViewRecorded`` on ``engagement.views``, keyed by video) feeds every recommender, so
view counting is not done twice (the QoE rows are keyed for per-video analysis, not for catalogue-wide ranking):

1. ``count_views`` (partitioned by video) counts a view once per (video, playback session) — later progress
   events of the same view change nothing — and writes the video's total, its place in the most-viewed list
   and its count for the UTC hour (trending) as absolute values. The first view of a (video, session) goes on
   to an internal topic keyed by viewer (profile, else user, else the anonymous session).
2. ``pair_co_watches`` (partitioned by viewer) keeps each viewer's last ``RECENT_PER_VIEWER`` distinct videos;
   a video new to the viewer is paired with each of them, and the pairs go to an internal topic keyed by video.
3. ``tally_co_watches`` (partitioned by video) keeps each video's co-watch counts (its ``NEIGHBOURS_KEPT`` best)
   and writes the whole neighbour map, so the row is an absolute value too.

Each agent writes Cassandra before it updates its table (RocksDB + changelog), as the QoE agent does: a replay
after a crash recomputes the same rows for view counts. A co-watch pair can be counted twice if the worker dies
between sending a pair and storing the viewer's state; recommendations rank by relative counts and tolerate
that, view totals do not and are exact.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import Counter

from common import topics
from common.cassandra import shared_session
from processors.app import app, raw_topic, topic_name
from processors.dead_letters import decoded
from processors.retry import until_applied
from sinks.discovery import Discovery, hour_of

log = logging.getLogger(__name__)

RECENT_PER_VIEWER = 20
NEIGHBOURS_KEPT = 100
VIEWS_COUNTED = Counter("recommend_views_total", "View events seen by the recommenders", ["outcome"])
PAIRS = Counter("recommend_co_watch_pairs_total", "Co-watch pairs counted")


class ViewerView(faust.Record, serializer="json"):
    """A viewer's first view of a video (internal, keyed by viewer)."""

    viewer_id: str
    video_id: str
    viewed_at_ms: int


class CoWatch(faust.Record, serializer="json"):
    """Viewers of ``video_id`` also watched ``others`` (internal, keyed by video)."""

    video_id: str
    others: list[str]


PARTITIONS = topics.partitions(topics.ENGAGEMENT_VIEWS)
views_topic = raw_topic(topics.ENGAGEMENT_VIEWS)
views_by_viewer_topic = app.topic(
    topic_name(topics.VIEWS_BY_VIEWER), key_type=str, value_type=ViewerView, partitions=PARTITIONS, internal=True
)
co_watches_topic = app.topic(
    topic_name(topics.CO_WATCHES), key_type=str, value_type=CoWatch, partitions=PARTITIONS, internal=True
)
# Co-partitioned with engagement.views: keyed "<video>|<session>" and "<video>", both from events of that video.
view_to_counted = app.Table("view-to-counted", default=bool, key_type=str, partitions=PARTITIONS)
video_to_views = app.Table("video-to-views", default=dict, key_type=str, partitions=PARTITIONS)
viewer_to_recent = app.Table("viewer-to-recent", default=list, key_type=str, partitions=PARTITIONS)
video_to_neighbours = app.Table("video-to-neighbours", default=dict, key_type=str, partitions=PARTITIONS)


@functools.cache
def discovery() -> Discovery:
    return Discovery(shared_session())


def viewer_of(view: dict[str, Any]) -> str:
    if view.get("profile_id"):
        return f"profile:{view['profile_id']}"
    if view.get("user_id"):
        return f"user:{view['user_id']}"
    return f"session:{view['session_id']}"


def counted(state: dict[str, Any], hour_ms: int) -> dict[str, Any]:
    """The video's tallies after one more view in the hour starting at ``hour_ms`` (hours as string keys: JSON)."""
    hours = dict(state.get("hours") or {})
    hours[str(hour_ms)] = int(hours.get(str(hour_ms), 0)) + 1
    # Trending reads a day; older hours stay in Cassandra and leave the state.
    newest = max(int(h) for h in hours)
    hours = {h: n for h, n in hours.items() if newest - int(h) < 48 * 3600 * 1000}
    return {"total": int(state.get("total", 0)) + 1, "hours": hours}


def with_view(recent: Sequence[str], video_id: str) -> tuple[list[str], list[str]]:
    """The viewer's recent list after watching ``video_id``, and the videos it pairs with (none if not new)."""
    if video_id in recent:
        return [video_id, *(v for v in recent if v != video_id)], []
    return [video_id, *recent][:RECENT_PER_VIEWER], list(recent)


def with_co_watches(neighbours: dict[str, int], others: Sequence[str], video_id: str) -> dict[str, int]:
    """Counts after one more co-watch with each of ``others``; only the best ``NEIGHBOURS_KEPT`` are kept."""
    updated = dict(neighbours)
    for other in others:
        if other != video_id:
            updated[other] = updated.get(other, 0) + 1
    if len(updated) > NEIGHBOURS_KEPT:
        best = sorted(updated, key=lambda other: (-updated[other], other))[:NEIGHBOURS_KEPT]
        updated = {other: updated[other] for other in best}
    return updated


@app.agent(views_topic)
async def count_views(stream: faust.StreamT) -> None:
    async for _event, view in decoded(app, stream, "ViewRecorded", "count_views"):
        video_id = view["video_id"]
        key = f"{video_id}|{view['session_id']}"
        if view_to_counted[key]:
            VIEWS_COUNTED.labels("repeat").inc()
            continue
        viewed_at: datetime = view["viewed_at"]
        if viewed_at.tzinfo is None:
            viewed_at = viewed_at.replace(tzinfo=UTC)
        hour = hour_of(viewed_at)
        hour_ms = int(hour.timestamp() * 1000)
        before = video_to_views[video_id]
        after = counted(before, hour_ms)
        record = functools.partial(
            discovery().record_views,
            video_id,
            after["total"],
            int(before.get("total", 0)),
            hour,
            after["hours"][str(hour_ms)],
        )
        await until_applied(record, f"view counts of {video_id}")
        await views_by_viewer_topic.send(
            key=viewer_of(view),
            value=ViewerView(viewer_of(view), video_id, int(viewed_at.timestamp() * 1000)),
        )
        video_to_views[video_id] = after
        view_to_counted[key] = True
        VIEWS_COUNTED.labels("counted").inc()


@app.agent(views_by_viewer_topic)
async def pair_co_watches(stream: faust.StreamT[ViewerView]) -> None:
    async for view in stream:
        recent, pairs = with_view(viewer_to_recent[view.viewer_id], view.video_id)
        await until_applied(functools.partial(discovery().set_recent, view.viewer_id, recent), "recent views")
        if pairs:
            await co_watches_topic.send(key=view.video_id, value=CoWatch(view.video_id, pairs))
            for other in pairs:
                await co_watches_topic.send(key=other, value=CoWatch(other, [view.video_id]))
            PAIRS.inc(len(pairs))
        viewer_to_recent[view.viewer_id] = recent


@app.agent(co_watches_topic)
async def tally_co_watches(stream: faust.StreamT[CoWatch]) -> None:
    async for co_watch in stream:
        neighbours = with_co_watches(video_to_neighbours[co_watch.video_id], co_watch.others, co_watch.video_id)
        set_neighbours = functools.partial(discovery().set_co_watched, co_watch.video_id, neighbours)
        await until_applied(set_neighbours, f"co-watches of {co_watch.video_id}")
        video_to_neighbours[co_watch.video_id] = neighbours
