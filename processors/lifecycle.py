"""Stage: video.lifecycle → Cassandra. Every status change lands on the video row and in its history.

Agent `record_status_changes`; idempotent, so a replay after a crash rewrites the same rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

import faust

from processors.app import app, topic_name
from processors.dead_letters import decoded
from processors.resources import catalog

lifecycle_topic = app.topic(topic_name("video.lifecycle"), key_serializer="raw", value_serializer="raw")


@app.agent(lifecycle_topic)
async def record_status_changes(stream: faust.StreamT) -> None:
    async for _event, change in decoded(app, stream, "VideoStatusChanged", "record_status_changes"):
        changed_at = change["changed_at"]
        if changed_at.tzinfo is None:
            changed_at = changed_at.replace(tzinfo=UTC)
        await catalog().set_status(
            change["video_id"],
            change["status"].lower(),
            change.get("reason"),
            changed_at or datetime.now(UTC),
        )
