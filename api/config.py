"""Settings of the API process alone (upload caps, multipart sizing, CORS), read from the environment.

The shared connection settings (Kafka, Cassandra, S3, host and ports) stay in ``common.settings``; these are
the knobs only the API has. Tests build an ``ApiConfig`` directly to shrink the caps.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MiB = 1024 * 1024
GiB = 1024 * MiB
# S3's own limits on multipart uploads.
S3_MIN_PART_SIZE = 5 * MiB
S3_MAX_PARTS = 10_000


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from exc


def _env_origins(name: str, default: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in os.environ.get(name, default).split(",") if part.strip())


@dataclass(frozen=True)
class ApiConfig:
    # Largest original accepted at all (presigned or form upload).
    max_upload_bytes: int = field(default_factory=lambda: _env_int("MAX_UPLOAD_BYTES", 10 * GiB))
    # Largest multipart/form-data request to POST /api/v1/videos/upload (refused early from Content-Length).
    max_form_upload_bytes: int = field(default_factory=lambda: _env_int("MAX_FORM_UPLOAD_BYTES", 2 * GiB))
    # Declared sizes above this get an S3 multipart upload (presigned part URLs) instead of one PUT.
    multipart_threshold: int = field(default_factory=lambda: _env_int("MULTIPART_THRESHOLD", 64 * MiB))
    # Part size offered to clients; raised when needed to stay within S3's 10,000 parts.
    multipart_part_size: int = field(default_factory=lambda: _env_int("MULTIPART_PART_SIZE", 32 * MiB))
    # How long a presigned PUT stays valid (multipart part URLs get more for large files, see videos.py).
    presign_ttl_s: int = field(default_factory=lambda: _env_int("PRESIGN_TTL_S", 15 * 60))
    # Origins allowed by CORS; "*" allows any (players on other origins fetch media, no cookies are used).
    cors_origins: tuple[str, ...] = field(default_factory=lambda: _env_origins("CORS_ORIGINS", "*"))
    # Base of the playback URLs returned to clients (e.g. the CDN); empty: the origin of the request.
    public_base_url: str = field(default_factory=lambda: os.environ.get("API_PUBLIC_URL", "").rstrip("/"))
    # How long a request waits for Kafka to acknowledge its events before answering 503.
    kafka_delivery_timeout_s: float = field(default_factory=lambda: float(_env_int("API_KAFKA_DELIVERY_TIMEOUT_S", 30)))
    # One INFO line per request (aiohttp's access log): off by default, the collector answers thousands of
    # beacons a second and api_requests_total already counts them by route and status; errors are logged anyway.
    access_log: bool = field(default_factory=lambda: os.environ.get("API_ACCESS_LOG", "") not in ("", "0", "false"))
    # Threads for blocking S3 calls (minio is synchronous); each streamed response holds one per chunk.
    storage_threads: int = field(default_factory=lambda: _env_int("API_STORAGE_THREADS", 32))

    def __post_init__(self) -> None:
        if self.multipart_part_size < S3_MIN_PART_SIZE:
            raise ValueError(f"MULTIPART_PART_SIZE must be at least {S3_MIN_PART_SIZE} bytes (S3's minimum)")
        for name in ("max_upload_bytes", "max_form_upload_bytes", "multipart_threshold", "presign_ttl_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    def part_size_for(self, size_bytes: int) -> int:
        """The part size for a multipart upload of ``size_bytes``: the configured one, or more, in whole MiB."""
        needed = -(-size_bytes // S3_MAX_PARTS)
        return max(self.multipart_part_size, -(-needed // MiB) * MiB)
