"""A platform of a test module's own on the shared servers: topics under a fresh prefix, a fresh keyspace.

    @pytest.fixture(scope="module")
    def rig_settings(live_servers: Settings) -> Iterator[Settings]:
        yield from scratch_platform(live_servers, "disc")

Every topic of topics.yaml exists under ``test-<name>-<id>.`` and every migration is applied to
``test_<name>_<id>`` while the caller holds the settings; afterwards both are removed, so what a test writes
lands nowhere else and does not stay behind.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

from cassandra.cluster import Session
from confluent_kafka.admin import NewTopic

from common.cassandra import cassandra_session
from common.kafka import admin_client
from common.settings import Settings
from infra.services import Service, faust_worker
from infra.topics import reconcile
from sinks.migrate import migrate


def scratch_platform(live_servers: Settings, name: str) -> Iterator[Settings]:
    unique = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(
        live_servers,
        topic_prefix=f"test-{name}-{unique}.",
        cassandra=dataclasses.replace(live_servers.cassandra, keyspace=f"test_{name.replace('-', '_')}_{unique}"),
    )
    reconcile(settings)
    migrate(settings.cassandra)
    try:
        yield settings
    finally:
        drop_scratch_platform(settings)


def drop_scratch_platform(settings: Settings) -> None:
    admin = admin_client(settings.kafka)
    topics = [name for name in admin.list_topics(timeout=30).topics if name.startswith(settings.topic_prefix)]
    for future in admin.delete_topics(topics).values() if topics else ():
        future.result(timeout=60)
    session = cassandra_session(settings.cassandra, keyspace=False)
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {settings.cassandra.keyspace}", timeout=120)
    finally:
        session.cluster.shutdown()


@dataclasses.dataclass
class WorkerRig:
    """A scratch platform with a Cassandra session on its keyspace and a home for workers of one role."""

    settings: Settings
    session: Session
    home: Path
    role: str

    def worker(self, name: str) -> Service:
        env = {"TOPIC_PREFIX": self.settings.topic_prefix, "CASSANDRA_KEYSPACE": self.settings.cassandra.keyspace}
        return faust_worker(name, self.role, 0, self.home, env)


def scratch_worker_rig(live_servers: Settings, name: str, role: str, home: Path) -> Iterator[WorkerRig]:
    for settings in scratch_platform(live_servers, name):
        session = cassandra_session(settings.cassandra)
        try:
            yield WorkerRig(settings, session, home, role)
        finally:
            session.cluster.shutdown()


def upload_topics(live_servers: Settings, name: str) -> Iterator[Settings]:
    """The real servers and keyspace, with fresh upload topics (video.uploaded, video.lifecycle) under
    ``test-<name>-<id>.``: agents running against the default topics (a Faust worker someone started) must not
    consume, and fail, a test's uploads. Lighter than ``scratch_platform``: no other topic, no keyspace."""
    settings = dataclasses.replace(live_servers, topic_prefix=f"test-{name}-{uuid.uuid4().hex[:8]}.")
    topics = [settings.topic("video.uploaded"), settings.topic("video.lifecycle")]
    admin = admin_client(settings.kafka)
    replication = settings.kafka.default_replication
    for future in admin.create_topics([NewTopic(topic, 3, replication) for topic in topics]).values():
        future.result(timeout=30)
    try:
        yield settings
    finally:
        for future in admin.delete_topics(topics).values():
            future.result(timeout=30)
