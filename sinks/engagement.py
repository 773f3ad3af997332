"""Cassandra reads and writes of comments, replies, ratings and per-video engagement totals.

The agent of processors/engagement.py applies events here; the API (api/engagement.py) reads the same
tables. Tables: sinks/migrations/0007_engagement.cql.

Exactness under replay (DESIGN.md "Guarantees"): no counters. Every row an event writes has a deterministic
key and carries the event's own time as its cell timestamp, and every total is an absolute count recomputed
from the rows it counts (per bucket, so no recount reads a whole video). Replaying an event therefore
rewrites identical rows and identical totals. One video's events are applied one after another (its
comments and its ratings each live on one Kafka partition), so two recounts of one bucket never race.

A removal is a tombstone in the lists at the removal's time and a ``removed_at`` on the comment row; a post
replayed after its removal finds ``removed_at`` and is a no-op, and its list writes (at the older post
time) would be shadowed anyway.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from cassandra.cluster import ResponseFuture, Session
from cassandra.query import PreparedStatement

from common.cassandra import run

log = logging.getLogger(__name__)

# Totals are kept per bucket: a recount reads one bucket (1/16 of a video's rows), a totals read 16 rows.
BUCKETS = 16
CommentSort = Literal["newest", "top"]
Rating = Literal["like", "dislike"]


def bucket_of(key: str) -> int:
    """The bucket of a viewer id (ratings) or a comment id (comments): stable across processes and releases."""
    return zlib.crc32(key.encode()) % BUCKETS


def micros(at: datetime) -> int:
    """A cell timestamp (microseconds since the epoch) from an event time."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1_000_000)


@dataclass(frozen=True)
class Comment:
    comment_id: str
    video_id: str
    parent_id: str | None
    account_id: str
    author_id: str
    body: str | None
    posted_at: datetime
    reply_count: int | None
    removed_at: datetime | None

    @property
    def removed(self) -> bool:
        return self.removed_at is not None


@dataclass(frozen=True)
class Totals:
    likes: int
    dislikes: int
    comments: int


@dataclass(frozen=True)
class Page:
    """One page of a list and the driver's paging state of the next one (None on the last page)."""

    ids: list[str]
    paging_state: bytes | None


async def run_page(
    session: Session, statement: PreparedStatement, params: Sequence[Any], limit: int, paging_state: bytes | None
) -> tuple[list[Any], bytes | None]:
    """One page of at most ``limit`` rows, resumed from ``paging_state``: the driver's own paging, so a page
    costs one read however deep it is, and rows added meanwhile never shift what the cursor points at."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    bound = statement.bind(params)
    bound.fetch_size = limit
    future: ResponseFuture = session.execute_async(bound, paging_state=paging_state)

    def resolve(rows: list[Any]) -> None:
        if not done.done():
            done.set_result(rows)

    def fail(exc: BaseException) -> None:
        if not done.done():
            done.set_exception(exc)

    future.add_callbacks(
        lambda page: loop.call_soon_threadsafe(resolve, list(page or [])),
        lambda exc: loop.call_soon_threadsafe(fail, exc),
    )
    rows = await done
    # The future is complete, so result() does not block; its paging_state is what a next page resumes from.
    return rows, future.result().paging_state


class EngagementStore:
    def __init__(self, session: Session) -> None:
        self.session = session
        prepare = session.prepare
        # --- comments ---
        self._get_comment = prepare(
            "SELECT comment_id, video_id, parent_id, account_id, author_id, body, posted_at, reply_count,"
            " removed_at FROM comments WHERE comment_id = ?"
        )
        self._insert_comment = prepare(
            "INSERT INTO comments (comment_id, video_id, parent_id, account_id, author_id, body, posted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._remove_comment = prepare(
            "UPDATE comments USING TIMESTAMP ? SET removed_at = ?, removed_by = ?, body = null WHERE comment_id = ?"
        )
        self._set_reply_count = prepare("UPDATE comments SET reply_count = ? WHERE comment_id = ?")
        self._insert_newest = prepare(
            "INSERT INTO comments_by_video_newest (video_id, posted_at, comment_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
        )
        self._delete_newest = prepare(
            "DELETE FROM comments_by_video_newest USING TIMESTAMP ?"
            " WHERE video_id = ? AND posted_at = ? AND comment_id = ?"
        )
        self._insert_top = prepare(
            "INSERT INTO comments_by_video_top (video_id, reply_count, posted_at, comment_id) VALUES (?, ?, ?, ?)"
        )
        self._delete_top = prepare(
            "DELETE FROM comments_by_video_top WHERE video_id = ? AND reply_count = ? AND posted_at = ?"
            " AND comment_id = ?"
        )
        self._insert_reply = prepare(
            "INSERT INTO comment_replies (parent_id, posted_at, comment_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
        )
        self._delete_reply = prepare(
            "DELETE FROM comment_replies USING TIMESTAMP ? WHERE parent_id = ? AND posted_at = ? AND comment_id = ?"
        )
        self._count_replies = prepare("SELECT COUNT(*) FROM comment_replies WHERE parent_id = ?")
        self._reply_ids = prepare("SELECT comment_id FROM comment_replies WHERE parent_id = ?")
        self._list_newest = prepare("SELECT comment_id FROM comments_by_video_newest WHERE video_id = ?")
        self._list_top = prepare("SELECT comment_id FROM comments_by_video_top WHERE video_id = ?")
        self._insert_comment_id = prepare(
            "INSERT INTO video_comment_ids (video_id, bucket, comment_id) VALUES (?, ?, ?) USING TIMESTAMP ?"
        )
        self._delete_comment_id = prepare(
            "DELETE FROM video_comment_ids USING TIMESTAMP ? WHERE video_id = ? AND bucket = ? AND comment_id = ?"
        )
        self._count_comments = prepare("SELECT COUNT(*) FROM video_comment_ids WHERE video_id = ? AND bucket = ?")
        self._set_comment_total = prepare("UPDATE engagement_totals SET comments = ? WHERE video_id = ? AND bucket = ?")
        # --- ratings ---
        self._set_rating = prepare(
            "INSERT INTO video_ratings (video_id, bucket, viewer_id, account_id, value, rated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
        )
        self._clear_rating = prepare(
            "DELETE FROM video_ratings USING TIMESTAMP ? WHERE video_id = ? AND bucket = ? AND viewer_id = ?"
        )
        self._get_rating = prepare(
            "SELECT value, rated_at FROM video_ratings WHERE video_id = ? AND bucket = ? AND viewer_id = ?"
        )
        # Filtering inside one partition (video, bucket) reads only that partition: the recount stays local.
        self._count_rating = prepare(
            "SELECT COUNT(*) FROM video_ratings WHERE video_id = ? AND bucket = ? AND value = ? ALLOW FILTERING"
        )
        self._set_rating_totals = prepare(
            "UPDATE engagement_totals SET likes = ?, dislikes = ? WHERE video_id = ? AND bucket = ?"
        )
        self._totals = prepare("SELECT likes, dislikes, comments FROM engagement_totals WHERE video_id = ?")

    # --- comments: writes from the agent ---------------------------------------------------------

    async def comment(self, comment_id: str) -> Comment | None:
        rows = await run(self.session, self._get_comment, (comment_id,))
        if not rows:
            return None
        r = rows[0]
        if r.video_id is None:  # only a removal reached this id (its post never did): no comment to show
            return None
        return Comment(
            r.comment_id,
            r.video_id,
            r.parent_id,
            r.account_id,
            r.author_id,
            r.body,
            r.posted_at.replace(tzinfo=UTC),
            r.reply_count,
            r.removed_at.replace(tzinfo=UTC) if r.removed_at else None,
        )

    async def post_comment(self, event: dict[str, Any]) -> None:
        """Apply a CommentPosted: the comment row, its place in the lists, the video's comment count."""
        comment_id, video_id, parent_id = event["comment_id"], event["video_id"], event.get("parent_id")
        posted_at = event["posted_at"]
        rows = await run(self.session, self._get_comment, (comment_id,))
        stored = rows[0] if rows else None
        if stored is not None and stored.removed_at is not None:
            return  # removed since: a replayed post must not bring it back
        first_post = stored is None or stored.video_id is None
        if stored is not None and not first_post:
            # Seen before (a replay, or a post retried under the same id with a later time): the first post's
            # place stands, so the lists never hold the comment twice.
            video_id, parent_id, posted_at = stored.video_id, stored.parent_id, stored.posted_at.replace(tzinfo=UTC)
        parent = None
        if parent_id is not None:
            parent = await self.comment(parent_id)
            if parent is None or parent.video_id != video_id or parent.parent_id is not None:
                # The API only accepts replies to a top-level comment of the same video; anything else came
                # from elsewhere and has no thread to join.
                log.warning("reply %s to %s on %s has no thread: ignored", comment_id, parent_id, video_id)
                return
        at = micros(posted_at)
        author = event.get("profile_id") or event["user_id"]
        if first_post:
            await run(
                self.session,
                self._insert_comment,
                (comment_id, video_id, parent_id, event["user_id"], author, event["body"], posted_at, at),
            )
        if parent is not None and parent.removed_at is not None:
            # The thread was removed before this reply was applied: the reply goes with it (after its post).
            removal = (max(micros(parent.removed_at), at + 1), parent.removed_at, "thread-removed", comment_id)
            await run(self.session, self._remove_comment, removal)
            return
        if parent is None:
            await run(self.session, self._insert_newest, (video_id, posted_at, comment_id, at))
        else:
            await run(self.session, self._insert_reply, (parent.comment_id, posted_at, comment_id, at))
        bucket = bucket_of(comment_id)
        await run(self.session, self._insert_comment_id, (video_id, bucket, comment_id, at))
        await self._place_in_top(parent or await self._required(comment_id))
        await self._recount_comments(video_id, bucket)

    async def remove_comment(self, event: dict[str, Any]) -> None:
        """Apply a CommentRemoved: out of every list and count; a removed top-level comment takes its thread."""
        comment_id, removed_at = event["comment_id"], event["removed_at"]
        comment = await self.comment(comment_id)
        # Never before its own post, whatever the clocks of two API instances said.
        at = max(micros(removed_at), micros(comment.posted_at) + 1) if comment else micros(removed_at)
        # Written even for an id not seen yet, so a post that arrives late finds it removed.
        await run(self.session, self._remove_comment, (at, removed_at, event["removed_by"], comment_id))
        if comment is None:
            return
        video_id = comment.video_id
        buckets = {bucket_of(comment_id)}
        if comment.parent_id is None:
            await run(self.session, self._delete_newest, (at, video_id, comment.posted_at, comment_id))
            if comment.reply_count is not None:
                top_row = (video_id, comment.reply_count, comment.posted_at, comment_id)
                await run(self.session, self._delete_top, top_row)
            replies = await run(self.session, self._reply_ids, (comment_id,))
            for reply in replies:
                buckets.add(bucket_of(reply.comment_id))
                await run(
                    self.session, self._delete_comment_id, (at, video_id, bucket_of(reply.comment_id), reply.comment_id)
                )
        else:
            await run(self.session, self._delete_reply, (at, comment.parent_id, comment.posted_at, comment_id))
            parent = await self.comment(comment.parent_id)
            if parent is not None and not parent.removed:
                await self._place_in_top(parent)
        await run(self.session, self._delete_comment_id, (at, video_id, bucket_of(comment_id), comment_id))
        for bucket in sorted(buckets):
            await self._recount_comments(video_id, bucket)

    async def _required(self, comment_id: str) -> Comment:
        comment = await self.comment(comment_id)
        if comment is None:
            raise RuntimeError(f"comment {comment_id} vanished while it was being placed")
        return comment

    async def _place_in_top(self, comment: Comment) -> None:
        """Recount a top-level comment's live replies and move its row in the "top" list if the count changed.

        The new row is written before the old one is deleted and the stored count is updated last, so a crash
        anywhere in between is repaired by the replay (it recounts, finds the old count still stored, and
        finishes the move)."""
        if comment.removed:
            return
        rows = await run(self.session, self._count_replies, (comment.comment_id,))
        count = int(rows[0].count) if rows else 0
        if count == comment.reply_count:
            return
        await run(self.session, self._insert_top, (comment.video_id, count, comment.posted_at, comment.comment_id))
        if comment.reply_count is not None:
            await run(
                self.session,
                self._delete_top,
                (comment.video_id, comment.reply_count, comment.posted_at, comment.comment_id),
            )
        await run(self.session, self._set_reply_count, (count, comment.comment_id))

    async def _recount_comments(self, video_id: str, bucket: int) -> None:
        rows = await run(self.session, self._count_comments, (video_id, bucket))
        await run(self.session, self._set_comment_total, (int(rows[0].count) if rows else 0, video_id, bucket))

    # --- comments: reads for the API -------------------------------------------------------------

    async def comments(
        self, video_id: str, sort: CommentSort, limit: int, paging_state: bytes | None = None
    ) -> tuple[list[Comment], bytes | None]:
        """A page of a video's top-level comments, newest first or most replies first."""
        statement = self._list_newest if sort == "newest" else self._list_top
        rows, next_state = await run_page(self.session, statement, (video_id,), limit, paging_state)
        return await self._load([r.comment_id for r in rows]), next_state

    async def replies(
        self, parent_id: str, limit: int, paging_state: bytes | None = None
    ) -> tuple[list[Comment], bytes | None]:
        """A page of a comment's replies, oldest first."""
        rows, next_state = await run_page(self.session, self._reply_ids, (parent_id,), limit, paging_state)
        return await self._load([r.comment_id for r in rows]), next_state

    async def _load(self, ids: list[str]) -> list[Comment]:
        found = await asyncio.gather(*(self.comment(comment_id) for comment_id in ids))
        # A row removed between the list read and this one is left out rather than shown blank.
        return [c for c in found if c is not None and not c.removed]

    # --- ratings -----------------------------------------------------------------------------------

    async def set_rating(self, event: dict[str, Any]) -> None:
        """Apply a RatingSet: the viewer's row, then the recount of its bucket."""
        await self.recount_ratings(*await self.write_rating(event))

    async def write_rating(self, event: dict[str, Any]) -> tuple[str, int]:
        """The viewer's rating row (at the event's time, so the latest rating wins whatever the order); returns
        the (video, bucket) whose totals must be recounted before the event counts as applied."""
        video_id = event["video_id"]
        viewer = event.get("profile_id") or event["user_id"]
        bucket = bucket_of(viewer)
        at = micros(event["rated_at"])
        value = str(event["value"]).lower()
        if value == "none":
            await run(self.session, self._clear_rating, (at, video_id, bucket, viewer))
        else:
            await run(
                self.session,
                self._set_rating,
                (video_id, bucket, viewer, event["user_id"], value, event["rated_at"], at),
            )
        return video_id, bucket

    async def recount_ratings(self, video_id: str, bucket: int) -> None:
        """Likes and dislikes of one bucket, counted from its rows and written as absolute values."""
        likes, dislikes = await asyncio.gather(
            run(self.session, self._count_rating, (video_id, bucket, "like")),
            run(self.session, self._count_rating, (video_id, bucket, "dislike")),
        )
        await run(
            self.session,
            self._set_rating_totals,
            (int(likes[0].count) if likes else 0, int(dislikes[0].count) if dislikes else 0, video_id, bucket),
        )

    async def rating(self, video_id: str, viewer_id: str) -> Rating | None:
        rows = await run(self.session, self._get_rating, (video_id, bucket_of(viewer_id), viewer_id))
        value = rows[0].value if rows else None
        return "like" if value == "like" else "dislike" if value == "dislike" else None

    async def totals(self, video_id: str) -> Totals:
        rows = await run(self.session, self._totals, (video_id,))
        return Totals(
            likes=sum(r.likes or 0 for r in rows),
            dislikes=sum(r.dislikes or 0 for r in rows),
            comments=sum(r.comments or 0 for r in rows),
        )
