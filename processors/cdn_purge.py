"""Stage: video.lifecycle → CDN edge purges. What the edge keeps of a video goes when the video changes.

    PROCESSOR_ROLE=control faust -A processors.app worker   # runs with the control worker's agents

Agent `purge_cdn_edge` bans every cached object of the video (sinks/cdn_edge.py) on:

* `VideoStatusChanged(DELETED)` — the objects are gone from storage and the API answers 404, but the edge
  would serve its copies (segments are cached for a year, immutable);
* `VideoPrivacyChanged` — every privacy change: made private or unlisted, its public copies must not outlive it
  (the reverse costs a refetch, no more);
* `VideoStatusChanged(READY)` — the manifests of a `playable` video list only the lowest rung; once `ready` every
  player should get the whole ladder at once, not when the edge's copy expires;
* `VideoStatusChanged(FAILED)` — a video can fail after it was playable; the API then answers 404.

Other statuses (uploading, processing, playable) have nothing cached: the edge keeps no error answers.

A purge is retried until the edge confirms it (never dropped): the partition waits, and the event is acked
only once done. Bans are idempotent, so a duplicate or a replay after a crash costs a refetch at most; an event
seen again in the same process (a repeated delete publishes the same DELETED) is not sent again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from prometheus_client import Counter

from common import topics
from common.lifecycle import CATALOG_STATUS, LIFECYCLE_RECORDS
from common.settings import load_settings
from processors.app import app, raw_topic
from processors.dead_letters import decoded_records
from sinks.cdn_edge import VIDEO_ID_RE, Edge, EdgePurgeError, edge_from_settings

log = logging.getLogger(__name__)

# The statuses after which the edge may hold something that is now wrong.
PURGED_STATUSES = frozenset({"READY", "FAILED", "DELETED"})
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 30.0
# Events remembered to skip a duplicate within this process (a few hours of lifecycle changes).
RECENT_EVENTS = 10_000

PURGES = Counter("cdn_purges_total", "Lifecycle events seen by the CDN purge", ["reason", "outcome"])
PURGE_RETRIES = Counter("cdn_purge_retries_total", "CDN purges retried after the edge did not confirm them")

lifecycle_topic = raw_topic(topics.VIDEO_LIFECYCLE)


def purge_reason(record: str, value: dict[str, Any]) -> str | None:
    """Why this lifecycle event purges the video ("deleted", "privacy", ...), or None when it does not."""
    if record == "VideoPrivacyChanged":
        return "privacy"
    if record == "VideoStatusChanged" and value["status"] in PURGED_STATUSES:
        return CATALOG_STATUS[value["status"]]
    return None


class EdgePurger:
    """Turns lifecycle events into confirmed purges of one edge: decides, skips duplicates, retries."""

    def __init__(
        self,
        edge: Edge,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        remember: int = RECENT_EVENTS,
    ) -> None:
        self.edge = edge
        self._sleep = sleep
        self._remember = remember
        self._done: OrderedDict[tuple[str, str, Any], None] = OrderedDict()

    async def handle(self, record: str, value: dict[str, Any]) -> bool:
        """Purge the event's video if the event calls for it; True when a purge was confirmed by the edge."""
        reason = purge_reason(record, value)
        if reason is None:
            PURGES.labels("none", "not_needed").inc()
            return False
        video_id = str(value["video_id"])
        if not VIDEO_ID_RE.match(video_id):
            # No route serves such an id (the API answers 404 before any lookup), so the edge holds nothing of it.
            PURGES.labels(reason, "not_an_id").inc()
            return False
        key = (video_id, reason, value.get("changed_at"))
        if key in self._done:
            PURGES.labels(reason, "duplicate").inc()
            return False
        await self._until_purged(video_id, reason)
        self._done[key] = None
        while len(self._done) > self._remember:
            self._done.popitem(last=False)
        PURGES.labels(reason, "purged").inc()
        log.info("edge purged of video %s (%s)", video_id, reason)
        return True

    async def _until_purged(self, video_id: str, reason: str) -> None:
        delay = RETRY_FIRST_S
        while True:
            try:
                await self.edge.purge_video(video_id)
                return
            except EdgePurgeError as exc:
                PURGE_RETRIES.inc()
                log.warning("purge of video %s (%s) failed (%s); retrying in %.1f s", video_id, reason, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)


@functools.cache
def purger() -> EdgePurger:
    return EdgePurger(edge_from_settings(load_settings()))


@app.agent(lifecycle_topic)
async def purge_cdn_edge(stream: faust.StreamT) -> None:
    async for _event, record, value in decoded_records(app, stream, LIFECYCLE_RECORDS, "purge_cdn_edge"):
        await purger().handle(record, value)
