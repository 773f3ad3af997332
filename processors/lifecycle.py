"""Stage: video.lifecycle → Cassandra. Every status change lands on the video row and in its history.

Agent `record_status_changes`; idempotent, so a replay after a crash rewrites the same rows, and a Cassandra
failure is retried in place (processors/retry.py). The topic also
carries `VideoPrivacyChanged` (the row already holds the new privacy when it is published): not a status change,
so this agent passes over it; the CDN purge (processors/cdn_purge.py) acts on it.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import faust

from processors.app import app, topic_name
from processors.dead_letters import decoded_records
from processors.resources import catalog
from processors.retry import until_applied
from producers.video_events import LIFECYCLE_RECORDS

lifecycle_topic = app.topic(topic_name("video.lifecycle"), key_serializer="raw", value_serializer="raw")


@app.agent(lifecycle_topic)
async def record_status_changes(stream: faust.StreamT) -> None:
    async for _event, record, change in decoded_records(app, stream, LIFECYCLE_RECORDS, "record_status_changes"):
        if record != "VideoStatusChanged":
            continue
        changed_at = change["changed_at"]
        if changed_at.tzinfo is None:
            changed_at = changed_at.replace(tzinfo=UTC)
        record_change = functools.partial(
            catalog().set_status,
            change["video_id"],
            change["status"].lower(),
            change.get("reason"),
            changed_at or datetime.now(UTC),
        )
        await until_applied(record_change, f"status of {change['video_id']}")
