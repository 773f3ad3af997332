"""The S3 client (minio) for every process, configured from StorageSettings.

Locally this talks to S3Proxy; in production to AWS S3, MinIO, Ceph RGW or any S3 API, by configuration.
"""

from __future__ import annotations

from minio import Minio

from common.settings import StorageSettings, load_settings


def storage_client(settings: StorageSettings | None = None) -> Minio:
    settings = settings or load_settings().storage
    return Minio(
        settings.endpoint,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        secure=settings.secure,
        region=settings.region,
    )


def ensure_buckets(settings: StorageSettings | None = None) -> list[str]:
    """Create the platform's buckets if missing; returns the ones created."""
    settings = settings or load_settings().storage
    client = storage_client(settings)
    created = []
    for bucket in (settings.uploads_bucket, settings.media_bucket):
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
            created.append(bucket)
    return created


def media_key(video_id: str, name: str) -> str:
    """Where a packaged object of a video lives in the media bucket (manifests, segments, artwork)."""
    return f"videos/{video_id}/{name}"


def source_key(video_id: str) -> str:
    """Where the original upload of a video lives in the uploads bucket (never served)."""
    return f"sources/{video_id}"
