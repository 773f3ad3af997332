"""Shared fixtures. Integration tests use the real servers started by `make up` and fail, never skip,
when one is missing; each test gets unique names (topics, keyspace rows, object keys)."""

from __future__ import annotations

import socket
import uuid

import pytest

from common.settings import Settings, load_settings


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def live_servers(settings: Settings) -> Settings:
    """The real Kafka, Cassandra and S3 servers; a clear failure (not a skip) when one is down."""
    missing = [
        name
        for name, address in (
            ("Kafka", settings.kafka.bootstrap_servers.split(",")[0]),
            ("Cassandra", f"{settings.cassandra.contact_points[0]}:{settings.cassandra.port}"),
            ("S3", settings.storage.endpoint),
        )
        if not _reachable(address)
    ]
    if missing:
        pytest.fail(f"{', '.join(missing)} not reachable: start the local stack with `make up`")
    return settings


@pytest.fixture
def unique() -> str:
    """A short unique suffix for names a test creates."""
    return uuid.uuid4().hex[:10]
