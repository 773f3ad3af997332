"""Publishing a video's status change from an agent: the one writer of the agents' statuses.

The row in Cassandra first, at once (so the next message of the same video sees it: package.py and probe.py
decide from the status they read), then the event on `video.lifecycle` for everyone else (the API's readers,
the CDN purge). Nothing consumes the event to write the row again: the API likewise writes its own changes
before it publishes them. Both writes are idempotent, so publishing twice is harmless.

Statuses are given in the catalogue's spelling ("failed"); common/lifecycle.py converts them for the event.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from common import topics
from common.avro import default_codec
from common.lifecycle import EVENT_STATUS
from processors.app import raw_topic
from processors.resources import catalog

log = logging.getLogger(__name__)

lifecycle_topic = raw_topic(topics.VIDEO_LIFECYCLE)


async def publish_status(video_id: str, status: str, reason: str | None = None, progress: float | None = None) -> None:
    changed_at = datetime.now(UTC)
    await catalog().set_status(video_id, status, reason, changed_at)
    value = default_codec().encode(
        "VideoStatusChanged",
        {
            "video_id": video_id,
            "status": EVENT_STATUS[status],
            "reason": reason,
            "changed_at": changed_at,
            "progress": progress,
        },
        topic=lifecycle_topic.get_topic_name(),
    )
    await lifecycle_topic.send(key=video_id.encode(), value=value)
    log.info("video %s is %s%s", video_id, status, f": {reason}" if reason else "")
