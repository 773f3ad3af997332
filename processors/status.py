"""Publishing a video's status change: the row in Cassandra at once (so the next message of the same video
sees it) and the event on `video.lifecycle` for everyone else (lifecycle sink, API, CDN purge).
Both writes are idempotent, so publishing twice is harmless."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from common.avro import default_codec
from processors.app import app, topic_name
from processors.resources import catalog

log = logging.getLogger(__name__)

lifecycle_out_topic = app.topic(topic_name("video.lifecycle"), key_serializer="raw", value_serializer="raw")


async def publish_status(video_id: str, status: str, reason: str | None = None, progress: float | None = None) -> None:
    changed_at = datetime.now(UTC)
    await catalog().set_status(video_id, status, reason, changed_at)
    value = default_codec().encode(
        "VideoStatusChanged",
        {
            "video_id": video_id,
            "status": status.upper(),
            "reason": reason,
            "changed_at": changed_at,
            "progress": progress,
        },
        topic=lifecycle_out_topic.get_topic_name(),
    )
    await lifecycle_out_topic.send(key=video_id.encode(), value=value)
    log.info("video %s is %s%s", video_id, status, f": {reason}" if reason else "")
