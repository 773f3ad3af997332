"""The Cassandra session for every process, configured from CassandraSettings, and `run`, the async
execution of a statement that every store uses."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, ResponseFuture, Session
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, Statement

from common.settings import CassandraSettings, load_settings

# A node that went away (restarted, killed) is tried again within this long once it is back: the driver's
# default waits up to ten minutes between tries, and every agent retrying a write waits for the reconnection.
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 10.0


def cassandra_cluster(settings: CassandraSettings | None = None) -> Cluster:
    settings = settings or load_settings().cassandra
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=settings.local_dc)),
        request_timeout=30,
    )
    auth = PlainTextAuthProvider(username=settings.username, password=settings.password) if settings.username else None
    return Cluster(
        contact_points=list(settings.contact_points),
        port=settings.port,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=auth,
        protocol_version=5,
        reconnection_policy=ExponentialReconnectionPolicy(RECONNECT_FIRST_S, RECONNECT_MAX_S),
    )


def cassandra_session(settings: CassandraSettings | None = None, keyspace: bool = True) -> Session:
    """A session bound to the platform keyspace (or to none, for migrations that create it)."""
    settings = settings or load_settings().cassandra
    cluster = cassandra_cluster(settings)
    return cluster.connect(settings.keyspace if keyspace else None)


_shared_session: Session | None = None
_shared_session_lock = threading.Lock()


def shared_session() -> Session:
    """The one session of this process (platform keyspace, settings from the environment), connected on first use
    and never shut down: every store of a worker shares its connection pools instead of opening a cluster each."""
    global _shared_session
    with _shared_session_lock:  # two threads asking first still connect once
        if _shared_session is None:
            _shared_session = cassandra_session(load_settings().cassandra)
        return _shared_session


async def run(
    session: Session, statement: PreparedStatement | Statement | str, params: Sequence[Any] = ()
) -> list[Any]:
    """Execute without blocking the event loop, following every result page (the driver pages at 5000 rows):
    the driver's callbacks resolve an asyncio future once the last page arrived."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Any]] = loop.create_future()
    future: ResponseFuture = session.execute_async(statement, params)
    rows: list[Any] = []

    def resolve() -> None:
        if not done.done():
            done.set_result(rows)

    def fail(exc: BaseException) -> None:
        if not done.done():
            done.set_exception(exc)

    def on_success(page: Iterable[Any]) -> None:
        rows.extend(page or [])
        if future.has_more_pages:
            future.start_fetching_next_page()  # the callbacks fire again with the next page
        else:
            loop.call_soon_threadsafe(resolve)

    def on_error(exc: BaseException) -> None:
        loop.call_soon_threadsafe(fail, exc)

    future.add_callbacks(on_success, on_error)
    return await done
