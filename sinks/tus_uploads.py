"""The state of tus resumable uploads (api/tus.py) in Cassandra: one row per upload (sinks/migrations/0011).

The row is what lets any API process serve the next request of an upload: its owner, length, offset, the S3
multipart upload with the ETags of its parts, the object holding the tail, the metadata and the expiry. It moves
only by ``advance``, a conditional write on the offset (an LWT), so two requests racing from one offset cannot
both count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cassandra.cluster import Session

from common.cassandra import run


def _aware(value: datetime | None) -> datetime | None:
    # Cassandra hands timestamps back naive, in UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@dataclass(frozen=True)
class TusUpload:
    upload_id: str  # the video's id
    owner_id: str
    upload_length: int
    upload_offset: int
    part_size: int
    s3_upload_id: str
    part_etags: tuple[str, ...]
    tail_key: str | None
    metadata: str | None
    content_type: str
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None = None

    @property
    def parts_end(self) -> int:
        """Bytes held by the recorded parts; the tail object holds the rest up to the offset."""
        return len(self.part_etags) * self.part_size

    @classmethod
    def from_row(cls, row: Any) -> TusUpload:
        created_at, expires_at = _aware(row.created_at), _aware(row.expires_at)
        assert created_at is not None and expires_at is not None  # written by create
        return cls(
            upload_id=row.upload_id,
            owner_id=row.owner_id,
            upload_length=row.upload_length,
            upload_offset=row.upload_offset,
            part_size=row.part_size,
            s3_upload_id=row.s3_upload_id,
            part_etags=tuple(row.part_etags or ()),
            tail_key=row.tail_key,
            metadata=row.metadata,
            content_type=row.content_type,
            created_at=created_at,
            expires_at=expires_at,
            completed_at=_aware(row.completed_at),
        )


class TusUploads:
    def __init__(self, session: Session) -> None:
        self.session = session
        prepare = session.prepare
        self._insert = prepare(
            "INSERT INTO tus_uploads (upload_id, owner_id, upload_length, upload_offset, part_size, s3_upload_id,"
            " part_etags, tail_key, metadata, content_type, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
        )
        self._get = prepare("SELECT * FROM tus_uploads WHERE upload_id = ?")
        self._advance = prepare(
            "UPDATE tus_uploads SET upload_offset = ?, part_etags = ?, tail_key = ?, expires_at = ?, completed_at = ?"
            " WHERE upload_id = ? IF upload_offset = ?"
        )
        self._set_expiry = prepare("UPDATE tus_uploads SET expires_at = ? WHERE upload_id = ? IF EXISTS")
        self._delete = prepare("DELETE FROM tus_uploads WHERE upload_id = ?")
        self._all = prepare("SELECT * FROM tus_uploads")

    async def create(self, upload: TusUpload) -> bool:
        rows = await run(
            self.session,
            self._insert,
            (
                upload.upload_id,
                upload.owner_id,
                upload.upload_length,
                upload.upload_offset,
                upload.part_size,
                upload.s3_upload_id,
                list(upload.part_etags),
                upload.tail_key,
                upload.metadata,
                upload.content_type,
                upload.created_at,
                upload.expires_at,
            ),
        )
        return bool(rows and rows[0].applied)

    async def get(self, upload_id: str) -> TusUpload | None:
        rows = await run(self.session, self._get, (upload_id,))
        return TusUpload.from_row(rows[0]) if rows else None

    async def advance(self, expected_offset: int, upload: TusUpload) -> bool:
        """Write ``upload``'s progress if the row is still at ``expected_offset``; whether it was written."""
        rows = await run(
            self.session,
            self._advance,
            (
                upload.upload_offset,
                list(upload.part_etags),
                upload.tail_key,
                upload.expires_at,
                upload.completed_at,
                upload.upload_id,
                expected_offset,
            ),
        )
        return bool(rows and rows[0].applied)

    async def set_expiry(self, upload_id: str, expires_at: datetime) -> None:
        await run(self.session, self._set_expiry, (expires_at, upload_id))

    async def remove(self, upload_id: str) -> None:
        await run(self.session, self._delete, (upload_id,))

    async def all(self) -> list[TusUpload]:
        """Every row (the expiry sweep's scan; the table holds only uploads in flight or recently finished)."""
        return [TusUpload.from_row(row) for row in await run(self.session, self._all)]
