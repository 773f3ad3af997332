"""Apply the CQL migrations in sinks/migrations/ in order, once each.

    python -m sinks.migrate           # create the keyspace if needed, apply what has not run
    python -m sinks.migrate --status  # list applied and pending migrations

Each file is `NNNN_name.cql`; statements end with `;` at the end of a line. Applied migrations are
recorded in `schema_migrations` with a checksum: editing a migration that already ran is refused (write
a new one instead). Statements use IF NOT EXISTS, so a run interrupted half-way can simply run again.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cassandra.cluster import Session

from common.cassandra import cassandra_session
from common.settings import CassandraSettings, load_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.cql$")
KEYSPACE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def statements(self) -> list[str]:
        without_comments = "\n".join(line for line in self.text.splitlines() if not line.strip().startswith("--"))
        return [part.strip() for part in re.split(r";\s*$", without_comments, flags=re.M) if part.strip()]


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.cql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_name.cql")
        migrations.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version number: {versions}")
    return migrations


def ensure_keyspace(session: Session, settings: CassandraSettings) -> None:
    if not KEYSPACE_NAME.match(settings.keyspace):
        raise MigrationError(f"invalid keyspace name {settings.keyspace!r}")
    session.execute(f"CREATE KEYSPACE IF NOT EXISTS {settings.keyspace} WITH replication = {settings.replication}")
    session.set_keyspace(settings.keyspace)
    session.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version int PRIMARY KEY, name text, checksum text, applied_at timestamp)"
    )


def applied_versions(session: Session) -> dict[int, str]:
    return {row.version: row.checksum for row in session.execute("SELECT version, checksum FROM schema_migrations")}


def migrate(settings: CassandraSettings | None = None, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Apply pending migrations; returns those applied by this run (empty on a second run)."""
    settings = settings or load_settings().cassandra
    session = cassandra_session(settings, keyspace=False)
    try:
        ensure_keyspace(session, settings)
        done = applied_versions(session)
        record = session.prepare(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)"
        )
        applied = []
        for migration in discover(directory):
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.path.name} was changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            for statement in migration.statements():
                session.execute(statement, timeout=120)
            session.execute(record, (migration.version, migration.name, migration.checksum, datetime.now(UTC)))
            applied.append(migration)
        return applied
    finally:
        session.cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sinks.migrate", description=__doc__.split("\n")[0])
    parser.add_argument("--status", action="store_true", help="list applied and pending migrations")
    args = parser.parse_args(argv)
    settings = load_settings().cassandra
    if args.status:
        session = cassandra_session(settings, keyspace=False)
        try:
            ensure_keyspace(session, settings)
            done = applied_versions(session)
        finally:
            session.cluster.shutdown()
        for migration in discover():
            state = "applied" if migration.version in done else "pending"
            print(f"[migrate] {migration.path.name}: {state}")
        return 0
    try:
        applied = migrate(settings)
    except MigrationError as exc:
        print(f"[migrate] error: {exc}", file=sys.stderr)
        return 1
    for migration in applied:
        print(f"[migrate] applied {migration.path.name}")
    if not applied:
        print(f"[migrate] keyspace {settings.keyspace} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
