"""Ordered, idempotent migrations against the real Cassandra, in a fresh keyspace per test."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from common.cassandra import cassandra_session
from common.settings import Settings
from sinks.migrate import MIGRATIONS_DIR, MigrationError, discover, migrate

pytestmark = pytest.mark.integration


@pytest.fixture
def keyspace_settings(live_servers: Settings, unique: str) -> Settings:
    return dataclasses.replace(
        live_servers, cassandra=dataclasses.replace(live_servers.cassandra, keyspace=f"test_{unique}")
    )


def drop(settings: Settings) -> None:
    session = cassandra_session(settings.cassandra, keyspace=False)
    session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra.keyspace}", timeout=120)
    session.cluster.shutdown()


def test_migrations_apply_once_in_order_and_are_recorded(keyspace_settings: Settings) -> None:
    try:
        applied = migrate(keyspace_settings.cassandra)
        assert [m.version for m in applied] == [m.version for m in discover()]
        assert migrate(keyspace_settings.cassandra) == []

        session = cassandra_session(keyspace_settings.cassandra)
        recorded = sorted(row.version for row in session.execute("SELECT version FROM schema_migrations"))
        tables = {
            row.table_name
            for row in session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
                (keyspace_settings.cassandra.keyspace,),
            )
        }
        session.cluster.shutdown()
        assert recorded == [m.version for m in discover()]
        assert {"videos", "video_variants", "segments", "video_lifecycle"} <= tables
    finally:
        drop(keyspace_settings)


def test_an_edited_applied_migration_is_refused(keyspace_settings: Settings, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    try:
        migrate(keyspace_settings.cassandra, copy)
        first = sorted(copy.glob("*.cql"))[0]
        first.write_text(first.read_text() + "\n-- edited after it ran\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(keyspace_settings.cassandra, copy)
    finally:
        drop(keyspace_settings)


def test_a_new_migration_runs_alone(keyspace_settings: Settings, tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy)
    try:
        migrate(keyspace_settings.cassandra, copy)
        (copy / "9999_extra.cql").write_text("CREATE TABLE IF NOT EXISTS extra (k text PRIMARY KEY);\n")
        assert [m.name for m in migrate(keyspace_settings.cassandra, copy)] == ["extra"]
    finally:
        drop(keyspace_settings)
