"""Reads and writes of the video catalogue in Cassandra (videos, renditions, segments, lifecycle).

One place for these queries so the API and the agents agree on them. Statements are prepared once per
session; every write is idempotent (deterministic primary keys, values recomputed, no counters), so an
event replayed after a crash writes the same rows again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session

from common.cassandra import run
from sinks.discovery import Discovery

# The fields a creator may set; everything else on a video is owned by the platform.
EDITABLE_FIELDS = ("title", "description", "tags", "privacy", "thumbnail_time_s")
PRIVACY_VALUES = ("public", "unlisted", "private")
STATUSES = ("uploading", "processing", "playable", "ready", "failed", "deleted")
# How far beyond its own time a deletion's status cell is stamped: about 300 years, more than any clock skew or
# replay, well within Cassandra's 64-bit microsecond timestamps (see Catalog.mark_deleted).
DELETED_CELL_OFFSET_US = 10**16


@dataclass(frozen=True)
class Segment:
    rendition: str
    number: int
    chunk_index: int
    start_s: float
    duration_s: float
    size_bytes: int
    object_key: str
    init_key: str
    timescale: int
    start_ticks: int
    duration_ticks: int
    keyframe_offset: int
    keyframe_size: int


class Catalog:
    def __init__(self, session: Session) -> None:
        self.session = session
        prepare = session.prepare
        self._insert_video = prepare(
            "INSERT INTO videos (video_id, owner_id, title, description, tags, privacy, status, source_bucket,"
            " source_key, original_filename, thumbnail_time_s, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'uploading', ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
        )
        self._get_video = prepare("SELECT * FROM videos WHERE video_id = ?")
        # Written with the event's own time as the cell timestamp: Cassandra keeps the latest change
        # whatever order events (or their replays) arrive in, and a replay rewrites identical cells.
        self._set_status = prepare(
            "UPDATE videos USING TIMESTAMP ? SET status = ?, status_reason = ?, updated_at = ? WHERE video_id = ?"
        )
        self._set_playable_at = prepare("UPDATE videos USING TIMESTAMP ? SET playable_at = ? WHERE video_id = ?")
        self._set_ready_at = prepare("UPDATE videos USING TIMESTAMP ? SET ready_at = ? WHERE video_id = ?")
        self._record_lifecycle = prepare(
            "INSERT INTO video_lifecycle (video_id, changed_at, status, reason) VALUES (?, ?, ?, ?)"
        )
        self._lifecycle = prepare("SELECT changed_at, status, reason FROM video_lifecycle WHERE video_id = ?")
        self._set_upload = prepare("UPDATE videos SET size_bytes = ?, updated_at = ? WHERE video_id = ?")
        self._set_probe = prepare(
            "UPDATE videos SET duration_s = ?, width = ?, height = ?, fps = ?, updated_at = ? WHERE video_id = ?"
        )
        self._upsert_variant = prepare(
            "INSERT INTO video_variants (video_id, rendition, kind, codec, width, height, fps, chunk_count,"
            " complete) VALUES (?, ?, ?, ?, ?, ?, ?, ?, false)"
        )
        self._variant_init = prepare(
            "UPDATE video_variants SET init_sha256 = ?, codecs = ?, timescale = ? WHERE video_id = ? AND rendition = ?"
        )
        self._set_plan = prepare(
            "UPDATE videos SET plan = ?, source_demuxer = ?, duration_s = ?, width = ?, height = ?, fps = ?,"
            " updated_at = ? WHERE video_id = ?"
        )
        self._variants = prepare("SELECT * FROM video_variants WHERE video_id = ?")
        self._complete_variant = prepare(
            "UPDATE video_variants SET complete = ?, codecs = ?, bandwidth_bps = ?, average_bandwidth_bps = ?"
            " WHERE video_id = ? AND rendition = ?"
        )
        self._insert_segment = prepare(
            "INSERT INTO segments (video_id, rendition, segment_number, chunk_index, start_s, duration_s,"
            " size_bytes, object_key, init_key, timescale, start_ticks, duration_ticks, keyframe_offset,"
            " keyframe_size, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self._segments = prepare(
            "SELECT segment_number, chunk_index, start_s, duration_s, size_bytes, object_key, init_key,"
            " timescale, start_ticks, duration_ticks, keyframe_offset, keyframe_size"
            " FROM segments WHERE video_id = ? AND rendition = ?"
        )
        self._edit = {
            name: prepare(f"UPDATE videos SET {name} = ?, updated_at = ? WHERE video_id = ?")
            for name in EDITABLE_FIELDS
        }

    # --- videos ---------------------------------------------------------------------------------

    async def create_video(
        self,
        video_id: str,
        owner_id: str,
        metadata: dict[str, Any],
        source_bucket: str,
        source_key: str,
        original_filename: str | None,
    ) -> bool:
        now = datetime.now(UTC)
        rows = await run(
            self.session,
            self._insert_video,
            (
                video_id,
                owner_id,
                metadata.get("title"),
                metadata.get("description"),
                set(metadata.get("tags") or ()),
                metadata.get("privacy", "public"),
                source_bucket,
                source_key,
                original_filename,
                metadata.get("thumbnail_time_s"),
                now,
                now,
            ),
        )
        applied = bool(rows and rows[0].applied)
        if applied:
            await self.index_text(video_id, metadata.get("title"), metadata.get("description"), metadata.get("tags"))
        return applied

    async def get_video(self, video_id: str) -> Any | None:
        rows = await run(self.session, self._get_video, (video_id,))
        return rows[0] if rows else None

    async def edit_video(self, video_id: str, changes: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        for name, value in changes.items():
            if name not in EDITABLE_FIELDS:
                raise ValueError(f"{name} is not an editable field")
            await run(self.session, self._edit[name], (set(value) if name == "tags" else value, now, video_id))
        if changes.keys() & {"title", "description", "tags"}:
            row = await self.get_video(video_id)
            if row is not None:
                await self.index_text(video_id, row.title, row.description, row.tags)

    async def index_text(
        self, video_id: str, title: str | None, description: str | None, tags: Iterable[str] | None
    ) -> None:
        """Search terms and the text vector on the video row (sinks/discovery.py), kept in step with its text."""
        discovery = getattr(self, "_discovery", None)
        if discovery is None:
            discovery = self._discovery = await asyncio.to_thread(Discovery, self.session)
        await discovery.index_text(video_id, title, description, tags)

    async def record_upload(self, video_id: str, size_bytes: int) -> None:
        await run(self.session, self._set_upload, (size_bytes, datetime.now(UTC), video_id))

    async def record_probe(self, video_id: str, duration_s: float, width: int, height: int, fps: float) -> None:
        await run(self.session, self._set_probe, (duration_s, width, height, fps, datetime.now(UTC), video_id))

    async def record_plan(
        self, video_id: str, plan_json: str, demuxer: str, duration_s: float, width: int, height: int, fps: float
    ) -> None:
        """What the probe found and the transcoding plan it made, in one write."""
        await run(
            self.session,
            self._set_plan,
            (plan_json, demuxer, duration_s, width, height, fps, datetime.now(UTC), video_id),
        )

    async def set_status(self, video_id: str, status: str, reason: str | None, changed_at: datetime) -> None:
        """Status on the video row plus one lifecycle row; replaying the same event rewrites both."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        micros = int(changed_at.timestamp() * 1_000_000)
        await run(self.session, self._record_lifecycle, (video_id, changed_at, status, reason))
        await run(self.session, self._set_status, (micros, status, reason, changed_at, video_id))
        if status == "playable":
            await run(self.session, self._set_playable_at, (micros, changed_at, video_id))
        elif status == "ready":
            await run(self.session, self._set_ready_at, (micros, changed_at, video_id))

    async def lifecycle(self, video_id: str) -> list[Any]:
        return await run(self.session, self._lifecycle, (video_id,))

    # --- renditions and segments ----------------------------------------------------------------

    async def declare_variant(
        self,
        video_id: str,
        rendition: str,
        kind: str,
        codec: str,
        width: int | None,
        height: int | None,
        fps: float | None,
        chunk_count: int,
    ) -> None:
        await run(
            self.session,
            self._upsert_variant,
            (video_id, rendition, kind, codec, width, height, fps, chunk_count),
        )

    async def record_variant_init(
        self, video_id: str, rendition: str, init_sha256: str, codecs: str, timescale: int
    ) -> None:
        await run(self.session, self._variant_init, (init_sha256, codecs, timescale, video_id, rendition))

    async def variants(self, video_id: str) -> list[Any]:
        return await run(self.session, self._variants, (video_id,))

    async def complete_variant(
        self, video_id: str, rendition: str, codecs: str, bandwidth_bps: int, average_bandwidth_bps: int
    ) -> None:
        await run(
            self.session,
            self._complete_variant,
            (True, codecs, bandwidth_bps, average_bandwidth_bps, video_id, rendition),
        )

    async def record_segments(self, video_id: str, segments: Iterable[Segment]) -> None:
        now = datetime.now(UTC)
        await asyncio.gather(
            *(
                run(
                    self.session,
                    self._insert_segment,
                    (
                        video_id,
                        s.rendition,
                        s.number,
                        s.chunk_index,
                        s.start_s,
                        s.duration_s,
                        s.size_bytes,
                        s.object_key,
                        s.init_key,
                        s.timescale,
                        s.start_ticks,
                        s.duration_ticks,
                        s.keyframe_offset,
                        s.keyframe_size,
                        now,
                    ),
                )
                for s in segments
            )
        )

    async def segments(self, video_id: str, rendition: str) -> list[Segment]:
        rows = await run(self.session, self._segments, (video_id, rendition))
        return [
            Segment(
                rendition,
                r.segment_number,
                r.chunk_index,
                r.start_s,
                r.duration_s,
                r.size_bytes,
                r.object_key,
                r.init_key,
                r.timescale,
                r.start_ticks,
                r.duration_ticks,
                r.keyframe_offset,
                r.keyframe_size,
            )
            for r in rows
        ]

    # --- deletion (API) ---------------------------------------------------------------------------

    async def mark_deleted(self, video_id: str, reason: str, deleted_at: datetime) -> None:
        """The tombstone: ``deleted_at`` (never written by the pipeline) and a status no later event overrides.

        Status cells carry their event's time (``set_status``), so a PLAYABLE or READY still in flight when the
        video is deleted would win over ``deleted``. Deleted is terminal: its status cell is written with a cell
        timestamp far beyond any event's (DELETED_CELL_OFFSET_US), so every reader that checks the status alone
        (lists, search, agents) keeps seeing ``deleted``.
        """
        statements = getattr(self, "_mark_deleted", None)
        if statements is None:
            statements = self._mark_deleted = (
                self.session.prepare("UPDATE videos SET deleted_at = ? WHERE video_id = ?"),
                self.session.prepare("UPDATE videos USING TIMESTAMP ? SET status = 'deleted' WHERE video_id = ?"),
            )
        set_deleted_at, pin_status = statements
        await run(self.session, set_deleted_at, (deleted_at, video_id))
        await self.set_status(video_id, "deleted", reason, deleted_at)
        micros = int(deleted_at.timestamp() * 1_000_000)
        await run(self.session, pin_status, (micros + DELETED_CELL_OFFSET_US, video_id))

    async def remove_renditions(self, video_id: str) -> None:
        """Drop the rows of a deleted video's renditions and segments (its objects are gone from storage)."""
        statements = getattr(self, "_remove_renditions", None)
        if statements is None:
            statements = self._remove_renditions = (
                self.session.prepare("DELETE FROM segments WHERE video_id = ? AND rendition = ?"),
                self.session.prepare("DELETE FROM video_variants WHERE video_id = ?"),
            )
        delete_segments, delete_variants = statements
        for variant in await self.variants(video_id):
            await run(self.session, delete_segments, (video_id, variant.rendition))
        await run(self.session, delete_variants, (video_id,))

    # --- conditional transitions (API) -------------------------------------------------------------

    async def transition_status(
        self, video_id: str, expected: str, status: str, reason: str | None, changed_at: datetime
    ) -> bool:
        """Move the video row from ``expected`` to ``status`` only if it is still ``expected`` (an LWT).

        The API uses it so that two concurrent completions of one upload cannot both publish; returns
        whether this call made the change. The lifecycle row is written separately with ``set_status``.
        """
        if status not in STATUSES or expected not in STATUSES:
            raise ValueError(f"unknown status {expected!r} or {status!r}")
        statement = getattr(self, "_transition_status", None)
        if statement is None:
            statement = self._transition_status = self.session.prepare(
                "UPDATE videos SET status = ?, status_reason = ?, updated_at = ? WHERE video_id = ? IF status = ?"
            )
        rows = await run(self.session, statement, (status, reason, changed_at, video_id, expected))
        return bool(rows and rows[0].applied)
