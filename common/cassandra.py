"""The Cassandra session for every process, configured from CassandraSettings."""

from __future__ import annotations

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy

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
