"""Cassandra writes and reads with prepared statements, on the migrated keyspace."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from cassandra.cluster import Session

from common.cassandra import cassandra_session
from common.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def session(live_servers: Settings) -> Iterator[Session]:
    session = cassandra_session(live_servers.cassandra)
    yield session
    session.cluster.shutdown()


def test_video_row_round_trip_with_prepared_statements(session: Session, unique: str) -> None:
    insert = session.prepare(
        "INSERT INTO videos (video_id, owner_id, title, tags, status, size_bytes, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    created = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    session.execute(
        insert,
        (f"v-{unique}", "owner-1", "Big Buck Bunny", {"animation", "cc-by"}, "uploading", 5_300_000, created),
    )

    select = session.prepare("SELECT title, tags, status, size_bytes, created_at FROM videos WHERE video_id = ?")
    row = session.execute(select, (f"v-{unique}",)).one()
    assert row.title == "Big Buck Bunny"
    assert row.tags == {"animation", "cc-by"}
    assert row.status == "uploading"
    assert row.size_bytes == 5_300_000
    assert row.created_at.replace(tzinfo=UTC) == created


def test_segment_rows_are_idempotent_on_their_deterministic_key(session: Session, unique: str) -> None:
    insert = session.prepare(
        "INSERT INTO segments (video_id, rendition, segment_number, duration_s, size_bytes, object_key)"
        " VALUES (?, ?, ?, ?, ?, ?)"
    )
    # A redone chunk writes the same key again: one row, the latest values.
    for size in (1000, 1200):
        for number in range(3):
            session.execute(insert, (f"v-{unique}", "360p", number, 4.0, size, f"v/{unique}/360p/{number}.m4s"))
    rows = list(
        session.execute(
            session.prepare("SELECT segment_number, size_bytes FROM segments WHERE video_id = ? AND rendition = ?"),
            (f"v-{unique}", "360p"),
        )
    )
    assert [(r.segment_number, r.size_bytes) for r in rows] == [(0, 1200), (1, 1200), (2, 1200)]
