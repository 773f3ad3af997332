"""Resumable uploads through tus 1.0 (api/tus.py) against the real servers: create, PATCH in chunks across a part
boundary, a PATCH cut off mid-body, resume on another API instance, completion into the same path as every upload
(VideoUploaded, the original in the bucket); offset mismatch, other users, the size cap, termination and expiry.

Like tests/integration/test_api_upload.py, the module publishes to topics of its own (a fresh TOPIC_PREFIX) and
looks only for its own video ids from the end offsets it recorded first.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api import tus
from api.app import init_app
from api.config import ApiConfig, MiB
from api.keys import catalog_key, store_key, tus_uploads_key
from common.settings import Settings
from common.storage import storage_client
from tests.auth_tools import authorize, sign_up
from tests.kafka_tools import end_offsets, events_for
from tests.scratch import upload_topics

pytestmark = pytest.mark.integration

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
TUS = {"Tus-Resumable": "1.0.0"}
PATCH_TYPE = {"Content-Type": "application/offset+octet-stream"}


@pytest.fixture(scope="module")
def api_settings(live_servers: Settings) -> Iterator[Settings]:
    yield from upload_topics(live_servers, "tus")


@pytest.fixture
async def make_client(aiohttp_client: Any, api_settings: Settings) -> ClientFactory:
    """An API instance; with ``headers`` it acts as that caller, else as a fresh creator."""

    async def make(config: ApiConfig | None = None, headers: dict[str, str] | None = None) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(await init_app(api_settings, config))
        if headers is None:
            await authorize(client, role="creator")
        else:
            client.session.headers.update(headers)
        return client

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client()


def metadata(**fields: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in fields.items())


async def tus_create(client: TestClient[Any, Any], length: int, **fields: str) -> str:
    fields.setdefault("title", "tus")
    headers = {**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(**fields)}
    async with client.post(tus.TUS_PATH, headers=headers) as response:
        assert response.status == 201, await response.text()
        assert response.headers["Tus-Resumable"] == "1.0.0" and response.headers["Upload-Expires"].endswith(" GMT")
        location: str = response.headers["Location"]
        return location


async def tus_patch(client: TestClient[Any, Any], url: str, offset: int, data: bytes) -> int:
    headers = {**TUS, **PATCH_TYPE, "Upload-Offset": str(offset)}
    async with client.patch(url, data=io.BytesIO(data), headers=headers) as response:
        assert response.status == 204, await response.text()
        return int(response.headers["Upload-Offset"])


async def tus_head(client: TestClient[Any, Any], url: str) -> int:
    async with client.head(url, headers=TUS) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        return int(response.headers["Upload-Offset"])


async def patch_cut_off(client: TestClient[Any, Any], url: str, offset: int, declared: int, sent: bytes) -> None:
    """A PATCH announcing ``declared`` bytes whose connection drops after ``sent``."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"PATCH {url} HTTP/1.1\r\nHost: test\r\nAuthorization: {client.session.headers['Authorization']}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode()
    )
    for start in range(0, len(sent), 256 * 1024):
        writer.write(sent[start : start + 256 * 1024])
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def stored_bytes(settings: Settings, key: str) -> bytes | None:
    client = storage_client(settings.storage)
    try:
        response = client.get_object(settings.storage.uploads_bucket, key)
    except Exception:
        return None
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def object_names(settings: Settings, prefix: str) -> list[str]:
    client = storage_client(settings.storage)
    objects = client.list_objects(settings.storage.uploads_bucket, prefix=prefix, recursive=True)
    return [o.object_name for o in objects if o.object_name]


# --- the whole path -----------------------------------------------------------------------------------------


async def test_options_tells_version_extensions_and_cap(make_client: ClientFactory) -> None:
    client = await make_client(ApiConfig(max_upload_bytes=123 * MiB))
    async with client.options(tus.TUS_PATH) as response:
        assert response.status == 204
        assert response.headers["Tus-Version"] == "1.0.0"
        assert set(response.headers["Tus-Extension"].split(",")) == {"creation", "termination", "expiration"}
        assert response.headers["Tus-Max-Size"] == str(123 * MiB)
    # A browser's preflight from another origin may send the tus headers and read the answers'.
    preflight = {"Origin": "https://studio.example", "Access-Control-Request-Method": "PATCH"}
    async with client.options(f"{tus.TUS_PATH}/x", headers=preflight) as response:
        assert response.status == 204
        assert "Upload-Offset" in response.headers["Access-Control-Allow-Headers"]
    async with client.head(f"{tus.TUS_PATH}/x", headers={**TUS, "Origin": "https://studio.example"}) as response:
        assert response.status == 404
        assert "Upload-Offset" in response.headers["Access-Control-Expose-Headers"]


async def test_resumable_upload_survives_a_dropped_connection_and_a_restart(
    client: TestClient[Any, Any], make_client: ClientFactory, api_settings: Settings, unique: str
) -> None:
    uploaded_topic, lifecycle_topic = api_settings.topic("video.uploaded"), api_settings.topic("video.lifecycle")
    uploaded_start = await asyncio.to_thread(end_offsets, api_settings, uploaded_topic)
    lifecycle_start = await asyncio.to_thread(end_offsets, api_settings, lifecycle_topic)
    body = os.urandom(7 * MiB + 12_345)
    fields = {
        "title": f"Tus {unique}",
        "description": "two\nlines",
        "tags": "a,b",
        "privacy": "unlisted",
        "thumbnail_time": "1.5",
        "filename": "My Clip.mp4",
        "filetype": "video/mp4",
    }
    url = await tus_create(client, len(body), **fields)
    video_id = url.rsplit("/", 1)[1]
    async with client.head(url, headers=TUS) as response:
        assert response.status == 200
        assert response.headers["Upload-Offset"] == "0" and response.headers["Upload-Length"] == str(len(body))
        assert response.headers["Upload-Metadata"] == metadata(**fields)
        assert response.headers["Tus-Resumable"] == "1.0.0" and response.headers["Upload-Expires"]
    async with client.get(f"/api/v1/videos/{video_id}") as response:
        video = await response.json()
    assert video["status"] == "uploading" and video["title"] == f"Tus {unique}" and video["tags"] == ["a", "b"]

    # Two PATCHes below a part: the bytes wait in the tail object, not in the process.
    assert await tus_patch(client, url, 0, body[: 1 * MiB]) == 1 * MiB
    assert await tus_patch(client, url, 1 * MiB, body[1 * MiB : 4 * MiB]) == 4 * MiB
    assert await asyncio.to_thread(object_names, api_settings, f"tus/{video_id}/") == [f"tus/{video_id}/tail-{4 * MiB}"]

    # A PATCH cut off after 2 MiB more, across the 5 MiB part boundary: what arrived is stored.
    await patch_cut_off(client, url, 4 * MiB, len(body) - 4 * MiB, body[4 * MiB : 6 * MiB])
    offset = 4 * MiB
    for _ in range(100):
        offset = await tus_head(client, url)
        if offset > 5 * MiB:
            break
        await asyncio.sleep(0.1)
    assert 5 * MiB < offset <= 6 * MiB, offset

    # Another API process (or this one restarted) serves the rest from the stored state.
    other = await make_client(headers=dict(client.session.headers))
    assert await tus_head(other, url) == offset
    assert await tus_patch(other, url, offset, body[offset:]) == len(body)

    stored = await asyncio.to_thread(stored_bytes, api_settings, f"sources/{video_id}")
    assert stored == body
    assert await asyncio.to_thread(object_names, api_settings, f"tus/{video_id}/") == []
    # The same events as a form upload.
    events = await asyncio.to_thread(events_for, api_settings, uploaded_topic, uploaded_start, video_id)
    assert len(events) == 1
    event = events[0]
    assert event["source_bucket"] == api_settings.storage.uploads_bucket
    assert event["source_key"] == f"sources/{video_id}"
    assert event["size_bytes"] == len(body) and event["content_type"] == "video/mp4"
    assert event["original_filename"] == "My Clip.mp4" and event["title"] == f"Tus {unique}"
    assert event["thumbnail_time_s"] == 1.5
    statuses = await asyncio.to_thread(events_for, api_settings, lifecycle_topic, lifecycle_start, video_id)
    assert [e["status"] for e in statuses] == ["PROCESSING"]
    async with client.get(f"/api/v1/videos/{video_id}/status") as response:
        status = await response.json()
    assert [h["status"] for h in status["history"]] == ["uploading", "processing"]

    # Done: HEAD says so (a client resuming a finished upload stops there); an empty PATCH changes nothing.
    async with client.head(url, headers=TUS) as response:
        assert response.headers["Upload-Offset"] == str(len(body)) and "Upload-Expires" not in response.headers
    assert await tus_patch(client, url, len(body), b"") == len(body)


async def test_small_upload_in_one_patch(client: TestClient[Any, Any], api_settings: Settings) -> None:
    body = os.urandom(300_000)
    url = await tus_create(client, len(body), filename="small.mov")
    assert await tus_patch(client, url, 0, body) == len(body)
    video_id = url.rsplit("/", 1)[1]
    assert await asyncio.to_thread(stored_bytes, api_settings, f"sources/{video_id}") == body
    video = await client.app[catalog_key].get_video(video_id)
    assert video.status == "processing" and video.size_bytes == len(body)


# --- refusals -----------------------------------------------------------------------------------------------


async def test_offset_mismatch_version_and_content_type(client: TestClient[Any, Any]) -> None:
    url = await tus_create(client, 1000)
    assert await tus_patch(client, url, 0, b"x" * 100) == 100
    async with client.patch(url, data=b"y", headers={**TUS, **PATCH_TYPE, "Upload-Offset": "0"}) as response:
        assert response.status == 409
        assert (await response.json())["detail"] == {"upload_offset": 100}
    async with client.patch(url, data=b"y", headers={**PATCH_TYPE, "Upload-Offset": "100"}) as response:
        assert response.status == 412 and response.headers["Tus-Version"] == "1.0.0"
    headers = {**TUS, "Content-Type": "application/octet-stream", "Upload-Offset": "100"}
    async with client.patch(url, data=b"y", headers=headers) as response:
        assert response.status == 415
    async with client.patch(url, data=b"y" * 901, headers={**TUS, **PATCH_TYPE, "Upload-Offset": "100"}) as response:
        assert response.status == 413
    assert await tus_head(client, url) == 100


async def test_another_user_gets_a_404_and_a_viewer_cannot_create(client: TestClient[Any, Any]) -> None:
    url = await tus_create(client, 1000)
    others, _ = await sign_up(client, role="creator")
    async with client.head(url, headers={**TUS, **others}) as response:
        assert response.status == 404
    async with client.patch(url, data=b"x", headers={**TUS, **PATCH_TYPE, **others, "Upload-Offset": "0"}) as response:
        assert response.status == 404
    async with client.delete(url, headers={**TUS, **others}) as response:
        assert response.status == 404
    assert await tus_head(client, url) == 0
    viewer, _ = await sign_up(client, role="viewer")
    headers = {**TUS, **viewer, "Upload-Length": "10", "Upload-Metadata": metadata(title="x")}
    async with client.post(tus.TUS_PATH, headers=headers) as response:
        assert response.status == 403


async def test_creation_is_checked_like_the_form(make_client: ClientFactory) -> None:
    client = await make_client(ApiConfig(max_upload_bytes=1000))
    cases = [
        ({"Upload-Length": "1001", "Upload-Metadata": metadata(title="x")}, 413),
        ({"Upload-Metadata": metadata(title="x")}, 400),
        ({"Upload-Length": "-1", "Upload-Metadata": metadata(title="x")}, 400),
        ({"Upload-Length": "10"}, 400),  # no title
        ({"Upload-Length": "10", "Upload-Metadata": metadata(title="x", status="ready")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": metadata(title="x", privacy="secret")}, 400),
        ({"Upload-Length": "10", "Upload-Metadata": "title not!base64"}, 400),
        ({"Upload-Length": "10", "Upload-Defer-Length": "1", "Upload-Metadata": metadata(title="x")}, 400),
    ]
    for headers, status in cases:
        async with client.post(tus.TUS_PATH, headers={**TUS, **headers}) as response:
            assert response.status == status, (headers, await response.text())
    async with client.post(tus.TUS_PATH, headers={"Upload-Length": "10", "Upload-Metadata": metadata(title="x")}) as r:
        assert r.status == 412
    async with client.post(
        tus.TUS_PATH, headers={**TUS, "Upload-Length": "10", "Upload-Metadata": "status cmVhZHk="}
    ) as r:
        assert (await r.json())["detail"] == {"status": "is read-only", "title": "is required"}


# --- ends: termination and expiry ---------------------------------------------------------------------------


async def _open_upload(client: TestClient[Any, Any]) -> tuple[str, Any]:
    url = await tus_create(client, 8 * MiB)
    assert await tus_patch(client, url, 0, os.urandom(6 * MiB)) == 6 * MiB  # a part and a tail
    upload = await client.app[tus_uploads_key].get(url.rsplit("/", 1)[1])
    assert upload is not None and len(upload.part_etags) == 1 and upload.tail_key
    return url, upload


async def _assert_discarded(
    client: TestClient[Any, Any], api_settings: Settings, url: str, upload: Any, why: str
) -> None:
    async with client.head(url, headers=TUS) as response:
        assert response.status == 404
    video = await client.app[catalog_key].get_video(upload.upload_id)
    assert video.status == "failed" and video.status_reason == why
    bucket = api_settings.storage.uploads_bucket
    # Aborted: S3 answers NoSuchUpload (None); S3Proxy's filesystem backend lists no parts.
    assert not await client.app[store_key].list_parts(bucket, f"sources/{upload.upload_id}", upload.s3_upload_id)
    assert await asyncio.to_thread(object_names, api_settings, f"tus/{upload.upload_id}/") == []


async def test_termination(client: TestClient[Any, Any], api_settings: Settings) -> None:
    url, upload = await _open_upload(client)
    async with client.delete(url, headers=TUS) as response:
        assert response.status == 204 and response.headers["Tus-Resumable"] == "1.0.0"
    await _assert_discarded(client, api_settings, url, upload, "upload terminated by its owner")


async def test_expired_uploads_are_swept(client: TestClient[Any, Any], api_settings: Settings) -> None:
    url, upload = await _open_upload(client)
    fresh = await tus_create(client, 100)
    store = client.app[tus_uploads_key]
    await store.set_expiry(upload.upload_id, datetime.now(UTC) - timedelta(seconds=1))
    async with client.head(url, headers=TUS) as response:
        assert response.status == 410
    async with client.patch(url, data=b"x", headers={**TUS, **PATCH_TYPE, "Upload-Offset": str(6 * MiB)}) as response:
        assert response.status == 410

    assert await tus.expire_uploads(client.app) >= 1
    await _assert_discarded(client, api_settings, url, upload, "upload expired")
    assert await tus_head(client, fresh) == 0  # not expired: untouched
