"""Publishing viewers' engagement to Kafka: comments and their removal, ratings, views (watch progress).

The API builds the events here and publishes them with the shared ``VideoEventPublisher`` (idempotent
producer, acks=all), answering 202 only once Kafka acknowledged them. The agents of
processors/engagement.py apply them to Cassandra.

Ratings are keyed per (video, viewer) so the compacted ``engagement.ratings`` keeps each viewer's latest
rating, but the partition is chosen from the video id alone, with the CRC-32 that librdkafka's default
partitioner applies to a ``video_id`` key: one video's ratings (like its comments and views) stay in order
on one partition, so its totals are recounted by one agent at a time.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime
from typing import Literal

from common import topics
from common.settings import Settings
from producers.video_events import Delivered, VideoEventPublisher

RatingValue = Literal["LIKE", "DISLIKE", "NONE"]


def rating_key(video_id: str, viewer_id: str) -> str:
    return f"{video_id}/{viewer_id}"


def video_partition(video_id: str, partitions: int) -> int:
    """The partition a ``video_id`` key gets from librdkafka's default (consistent) partitioner."""
    return zlib.crc32(video_id.encode()) % partitions


class EngagementEvents:
    """The API's engagement events, on top of the process's one publisher."""

    def __init__(self, publisher: VideoEventPublisher, settings: Settings) -> None:
        self.publisher = publisher
        self.settings = settings

    async def comment_posted(
        self,
        comment_id: str,
        video_id: str,
        account_id: str,
        profile_id: str | None,
        body: str,
        parent_id: str | None = None,
        posted_at: datetime | None = None,
    ) -> Delivered:
        value = {
            "comment_id": comment_id,
            "video_id": video_id,
            "user_id": account_id,
            "profile_id": profile_id,
            "parent_id": parent_id,
            "body": body,
            "posted_at": posted_at or datetime.now(UTC),
        }
        return await self.publisher.publish(
            self.settings.topic(topics.ENGAGEMENT_COMMENTS), video_id, "CommentPosted", value
        )

    async def comment_removed(self, comment_id: str, video_id: str, removed_by: str) -> Delivered:
        value = {
            "comment_id": comment_id,
            "video_id": video_id,
            "removed_by": removed_by,
            "removed_at": datetime.now(UTC),
        }
        return await self.publisher.publish(
            self.settings.topic(topics.ENGAGEMENT_COMMENTS), video_id, "CommentRemoved", value
        )

    async def rating_set(
        self,
        video_id: str,
        account_id: str,
        profile_id: str | None,
        value: RatingValue,
        rated_at: datetime | None = None,
    ) -> Delivered:
        topic = self.settings.topic(topics.ENGAGEMENT_RATINGS)
        event = {
            "video_id": video_id,
            "user_id": account_id,
            "profile_id": profile_id,
            "value": value,
            "rated_at": rated_at or datetime.now(UTC),
        }
        key = rating_key(video_id, profile_id or account_id)
        partition = video_partition(video_id, topics.partitions(topics.ENGAGEMENT_RATINGS))
        return await self.publisher.publish(topic, key, "RatingSet", event, partition=partition)

    async def view_recorded(
        self,
        video_id: str,
        session_id: str,
        account_id: str | None,
        profile_id: str | None,
        position_s: float,
        watched_s: float,
        viewed_at: datetime | None = None,
    ) -> Delivered:
        value = {
            "video_id": video_id,
            "session_id": session_id,
            "user_id": account_id,
            "profile_id": profile_id,
            "watched_s": watched_s,
            "position_s": position_s,
            "viewed_at": viewed_at or datetime.now(UTC),
        }
        return await self.publisher.publish(
            self.settings.topic(topics.ENGAGEMENT_VIEWS), video_id, "ViewRecorded", value
        )
