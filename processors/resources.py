"""Clients the agents share inside one worker process, created on first use.

Blocking clients (Cassandra connect, minio) are created once; agents call them through `asyncio.to_thread`
or the driver's async API so the event loop keeps serving Kafka heartbeats.
"""

from __future__ import annotations

import functools

from minio import Minio

from common.cassandra import cassandra_session
from common.settings import load_settings
from common.storage import storage_client
from sinks.catalog import Catalog


@functools.cache
def catalog() -> Catalog:
    return Catalog(cassandra_session(load_settings().cassandra))


@functools.cache
def storage() -> Minio:
    return storage_client(load_settings().storage)
