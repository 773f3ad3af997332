"""Platform configuration, read once from environment variables.

Every default points at the local stack that `infra/stack.py up` starts on 127.0.0.1; production points the
same code at real clusters by setting the variables below (documented in README.md, "Configuration").
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Where processes keep local state ($VIDPLAT_STATE_DIR, default <repo>/.state): the servers' data, the Faust
    tables, the workers' scratch space, generated secrets."""
    return Path(os.environ.get("VIDPLAT_STATE_DIR", REPO_ROOT / ".state")).resolve()


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def _env_list(name: str, default: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in _env(name, default).split(",") if part.strip())


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = field(default_factory=lambda: _env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    # PLAINTEXT locally; SASL_SSL (with the SASL variables below) against a managed cluster.
    security_protocol: str = field(default_factory=lambda: _env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"))
    sasl_mechanism: str = field(default_factory=lambda: _env("KAFKA_SASL_MECHANISM", ""))
    sasl_username: str = field(default_factory=lambda: _env("KAFKA_SASL_USERNAME", ""))
    sasl_password: str = field(default_factory=lambda: _env("KAFKA_SASL_PASSWORD", ""), repr=False)
    ssl_ca_location: str = field(default_factory=lambda: _env("KAFKA_SSL_CA_LOCATION", ""))
    # When set, messages use the Confluent wire format with ids from this registry instead of
    # Avro single-object encoding.
    schema_registry_url: str = field(default_factory=lambda: _env("SCHEMA_REGISTRY_URL", ""))
    # Replication for topics.yaml entries that do not pin one: 1 locally, 3 on a cluster.
    default_replication: int = field(default_factory=lambda: _env_int("KAFKA_REPLICATION_FACTOR", 1))

    def client_config(self) -> dict[str, str]:
        """librdkafka (confluent-kafka) connection settings; secrets are never logged."""
        config = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password
        if self.ssl_ca_location:
            config["ssl.ca.location"] = self.ssl_ca_location
        return config


@dataclass(frozen=True)
class CassandraSettings:
    contact_points: tuple[str, ...] = field(default_factory=lambda: _env_list("CASSANDRA_CONTACT_POINTS", "127.0.0.1"))
    port: int = field(default_factory=lambda: _env_int("CASSANDRA_PORT", 9042))
    keyspace: str = field(default_factory=lambda: _env("CASSANDRA_KEYSPACE", "vidplat"))
    local_dc: str = field(default_factory=lambda: _env("CASSANDRA_LOCAL_DC", "datacenter1"))
    # CQL replication map for the keyspace, e.g. "{'class': 'NetworkTopologyStrategy', 'dc1': 3}".
    replication: str = field(
        default_factory=lambda: _env("CASSANDRA_REPLICATION", "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    )
    username: str = field(default_factory=lambda: _env("CASSANDRA_USERNAME", ""))
    password: str = field(default_factory=lambda: _env("CASSANDRA_PASSWORD", ""), repr=False)


@dataclass(frozen=True)
class StorageSettings:
    endpoint: str = field(default_factory=lambda: _env("S3_ENDPOINT", "127.0.0.1:9000"))
    secure: bool = field(default_factory=lambda: _env("S3_SECURE", "false").lower() == "true")
    region: str = field(default_factory=lambda: _env("S3_REGION", "us-east-1"))
    access_key: str = field(default_factory=lambda: _env("S3_ACCESS_KEY", "local-access-key"))
    secret_key: str = field(default_factory=lambda: _env("S3_SECRET_KEY", "local-secret-key"), repr=False)
    # Originals as uploaded (never served) and the packaged renditions (served through the API/CDN).
    uploads_bucket: str = field(default_factory=lambda: _env("S3_UPLOADS_BUCKET", "uploads"))
    media_bucket: str = field(default_factory=lambda: _env("S3_MEDIA_BUCKET", "media"))


@dataclass(frozen=True)
class AuthSettings:
    # HMAC key of access and playback tokens; empty: api/auth.py generates one into VIDPLAT_STATE_DIR.
    jwt_secret: str = field(default_factory=lambda: _env("JWT_SECRET", ""), repr=False)
    jwt_issuer: str = field(default_factory=lambda: _env("JWT_ISSUER", "vidplat"))
    jwt_audience: str = field(default_factory=lambda: _env("JWT_AUDIENCE", "vidplat-api"))
    access_ttl_s: int = field(default_factory=lambda: _env_int("ACCESS_TOKEN_TTL_S", 15 * 60))
    refresh_ttl_s: int = field(default_factory=lambda: _env_int("REFRESH_TOKEN_TTL_S", 30 * 24 * 3600))
    # Playback tokens of private videos live this long beyond the video's duration (see api/access.py).
    playback_ttl_s: int = field(default_factory=lambda: _env_int("PLAYBACK_TOKEN_TTL_S", 10 * 60))
    state_dir: Path = field(default_factory=state_dir)


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    cassandra: CassandraSettings = field(default_factory=CassandraSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    # Prefix added to every topic name; tests use it to get fresh topics.
    topic_prefix: str = field(default_factory=lambda: _env("TOPIC_PREFIX", ""))
    api_host: str = field(default_factory=lambda: _env("API_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: _env_int("API_PORT", 8080))
    # How many API processes `infra/services.py` starts on API_PORT. Above 1 each binds it with SO_REUSEPORT and
    # the kernel spreads connections among them; per-session rate limits and (session, seq) dedupe of telemetry
    # are then per process (the QoE agents dedupe again on seq).
    # Two by default: the collector is CPU-bound Python, and one process per core of a small machine doubles it.
    api_processes: int = field(default_factory=lambda: _env_int("API_PROCESSES", 2))
    # Prometheus exposition port of this process (each long-running process sets its own).
    metrics_port: int = field(default_factory=lambda: _env_int("METRICS_PORT", 9400))
    # The CDN edge in front of the API's playback routes: where purges go (sinks/cdn_edge.py), and where the local
    # Varnish listens (infra/services.py). Empty: no edge, nothing to purge.
    edge_url: str = field(default_factory=lambda: _env("EDGE_URL", "http://127.0.0.1:8081"))

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def load_settings() -> Settings:
    return Settings()
