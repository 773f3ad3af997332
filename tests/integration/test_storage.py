"""S3 through the minio client against the real S3 server: put/get, presigned PUT, ranged GET."""

from __future__ import annotations

import io
import urllib.request
from datetime import timedelta

import pytest
from minio import Minio

from common.settings import Settings
from common.storage import ensure_buckets, storage_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(live_servers: Settings) -> Minio:
    ensure_buckets(live_servers.storage)
    return storage_client(live_servers.storage)


def test_put_then_get_returns_the_same_bytes(client: Minio, settings: Settings, unique: str) -> None:
    body = bytes(range(256)) * 1000
    bucket = settings.storage.media_bucket
    client.put_object(bucket, f"tests/{unique}/blob.bin", io.BytesIO(body), len(body), content_type="video/mp4")
    response = client.get_object(bucket, f"tests/{unique}/blob.bin")
    try:
        assert response.read() == body
        assert response.headers["Content-Type"] == "video/mp4"
    finally:
        response.close()
        response.release_conn()


def test_presigned_put_accepts_an_upload_without_credentials(client: Minio, settings: Settings, unique: str) -> None:
    bucket = settings.storage.uploads_bucket
    url = client.presigned_put_object(bucket, f"tests/{unique}/upload.mp4", expires=timedelta(minutes=5))
    body = b"\x00\x00\x00\x18ftypmp42" + b"x" * 4096
    request = urllib.request.Request(url, data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 200
    assert client.stat_object(bucket, f"tests/{unique}/upload.mp4").size == len(body)


def test_presigned_put_refuses_a_tampered_key(client: Minio, settings: Settings, unique: str) -> None:
    bucket = settings.storage.uploads_bucket
    url = client.presigned_put_object(bucket, f"tests/{unique}/mine.mp4", expires=timedelta(minutes=5))
    tampered = url.replace(f"tests/{unique}/mine.mp4", f"tests/{unique}/theirs.mp4")
    request = urllib.request.Request(tampered, data=b"payload", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    refused.value.close()


def test_ranged_get_returns_exactly_the_requested_bytes(client: Minio, settings: Settings, unique: str) -> None:
    body = bytes(i % 251 for i in range(100_000))
    bucket = settings.storage.media_bucket
    client.put_object(bucket, f"tests/{unique}/ranged.bin", io.BytesIO(body), len(body))
    response = client.get_object(bucket, f"tests/{unique}/ranged.bin", offset=1000, length=500)
    try:
        assert response.status == 206
        assert response.read() == body[1000:1500]
    finally:
        response.close()
        response.release_conn()
