"""The upload API against the real servers: create, presigned PUT (single and multipart), complete, form upload.

The module publishes to topics of its own (a fresh TOPIC_PREFIX), so agents running against the default
topics never see its uploads. Each test records the end offsets first and then looks for its own video id
from there, so it sees only what it caused; video ids are fresh UUIDs, so tests do not interfere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from api.app import init_app
from api.config import ApiConfig, MiB
from api.keys import catalog_key
from common.settings import KafkaSettings, Settings
from common.storage import storage_client
from producers import upload_cli
from tests.auth_tools import authorize, sign_up
from tests.kafka_tools import end_offsets, events_for
from tests.scratch import upload_topics

pytestmark = pytest.mark.integration

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


# --- helpers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_settings(live_servers: Settings) -> Iterator[Settings]:
    yield from upload_topics(live_servers, "api")


@pytest.fixture
async def make_client(aiohttp_client: Any, api_settings: Settings) -> ClientFactory:
    async def make(config: ApiConfig | None = None) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(await init_app(api_settings, config))
        await authorize(client, role="creator")  # uploads are for creators: every request carries its token
        return client

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient[Any, Any]:
    return await make_client()


async def create(client: TestClient[Any, Any], **fields: Any) -> dict[str, Any]:
    async with client.post("/api/v1/videos", json=fields) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def put_bytes(url: str, body: bytes, content_type: str = "video/mp4") -> None:
    async with aiohttp.ClientSession() as session:
        async with session.put(url, data=io.BytesIO(body), headers={"Content-Type": content_type}) as response:
            assert response.status == 200, await response.text()


def form(fields: dict[str, str], file: bytes, filename: str = "clip.mp4") -> aiohttp.FormData:
    data = aiohttp.FormData()
    for name, value in fields.items():
        data.add_field(name, value)
    data.add_field("file", io.BytesIO(file), filename=filename, content_type="video/mp4")
    return data


def multipart_body(boundary: str, fields: dict[str, str], file: bytes) -> bytes:
    """A multipart/form-data body built by hand, to send it in chunks without a Content-Length."""
    out = bytearray()
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    return bytes(out + file + f"\r\n--{boundary}--\r\n".encode())


def stored_bytes(settings: Settings, bucket: str, key: str) -> bytes | None:
    client = storage_client(settings.storage)
    try:
        response = client.get_object(bucket, key)
    except Exception:
        return None
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


# --- create + presigned PUT + complete ------------------------------------------------------------


async def test_create_put_complete_publishes_video_uploaded(
    client: TestClient[Any, Any], api_settings: Settings, unique: str
) -> None:
    uploaded_topic = api_settings.topic("video.uploaded")
    lifecycle_topic = api_settings.topic("video.lifecycle")
    uploaded_start = await asyncio.to_thread(end_offsets, api_settings, uploaded_topic)
    lifecycle_start = await asyncio.to_thread(end_offsets, api_settings, lifecycle_topic)
    body = os.urandom(50_000)

    created = await create(
        client,
        title=f"Test {unique}",
        description="two\nlines",
        tags=["cc-by", "test"],
        privacy="unlisted",
        thumbnail_time=1.5,
        filename="My Clip.mp4",
        size_bytes=len(body),
        content_type="video/mp4",
    )
    video_id = created["video_id"]
    assert created["status"] == "uploading"
    upload = created["upload"]
    assert upload["method"] == "PUT" and upload["url"].startswith("http") and upload["expires_at"]
    await put_bytes(upload["url"], body)

    async with client.post(f"/api/v1/videos/{video_id}/complete") as response:
        assert response.status == 202, await response.text()
        assert await response.json() == {"video_id": video_id, "status": "processing"}

    events = await asyncio.to_thread(events_for, api_settings, uploaded_topic, uploaded_start, video_id)
    assert len(events) == 1
    event = events[0]
    assert event["source_bucket"] == api_settings.storage.uploads_bucket
    assert event["source_key"] == f"sources/{video_id}"
    assert event["size_bytes"] == len(body)
    assert event["title"] == f"Test {unique}"
    assert event["content_type"] == "video/mp4"
    assert event["original_filename"] == "My Clip.mp4"
    assert event["thumbnail_time_s"] == 1.5
    statuses = await asyncio.to_thread(events_for, api_settings, lifecycle_topic, lifecycle_start, video_id)
    assert [e["status"] for e in statuses] == ["PROCESSING"]

    async with client.get(f"/api/v1/videos/{video_id}/status") as response:
        status = await response.json()
    assert status["status"] == "processing"
    assert [h["status"] for h in status["history"]] == ["uploading", "processing"]
    async with client.get(f"/api/v1/videos/{video_id}") as response:
        video = await response.json()
    assert video["title"] == f"Test {unique}" and video["tags"] == ["cc-by", "test"]
    assert video["privacy"] == "unlisted" and video["urls"] is None and video["renditions"] == []

    # A second complete does not publish again.
    async with client.post(f"/api/v1/videos/{video_id}/complete") as response:
        assert response.status == 409
        assert (await response.json())["detail"] == {"status": "processing"}


async def test_unknown_and_read_only_fields_are_named_in_a_400(client: TestClient[Any, Any]) -> None:
    fields = {"title": "x", "size_bytes": 10, "video_id": "mine", "status": "ready", "owner_id": "me", "colour": 1}
    async with client.post("/api/v1/videos", json=fields) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"] == "invalid request"
    assert body["detail"] == {
        "video_id": "is read-only",
        "status": "is read-only",
        "owner_id": "is read-only",
        "colour": "is not a known field",
    }


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"title": 5, "size_bytes": 10}, "title"),
        ({"title": "", "size_bytes": 10}, "title"),
        ({"title": "x" * 201, "size_bytes": 10}, "title"),
        ({"size_bytes": 10}, "title"),
        ({"title": "x", "size_bytes": "10"}, "size_bytes"),
        ({"title": "x", "size_bytes": 0}, "size_bytes"),
        ({"title": "x", "size_bytes": True}, "size_bytes"),
        ({"title": "x"}, "size_bytes"),
        ({"title": "x", "size_bytes": 10, "tags": "a,b"}, "tags"),
        ({"title": "x", "size_bytes": 10, "tags": ["t"] * 0 + [f"t{i}" for i in range(31)]}, "tags"),
        ({"title": "x", "size_bytes": 10, "tags": ["x" * 41]}, "tags"),
        ({"title": "x", "size_bytes": 10, "privacy": "secret"}, "privacy"),
        ({"title": "x", "size_bytes": 10, "thumbnail_time": -1}, "thumbnail_time"),
        ({"title": "x", "size_bytes": 10, "description": "d" * 5001}, "description"),
        ({"title": "x", "size_bytes": 10, "content_type": "not a type"}, "content_type"),
    ],
)
async def test_bad_values_are_refused(client: TestClient[Any, Any], fields: dict[str, Any], bad: str) -> None:
    async with client.post("/api/v1/videos", json=fields) as response:
        assert response.status == 400
        assert list((await response.json())["detail"]) == [bad]


async def test_a_body_that_is_not_a_json_object_is_a_400(client: TestClient[Any, Any]) -> None:
    for data in (b"{not json", b"[1, 2]"):
        async with client.post("/api/v1/videos", data=data) as response:
            assert response.status == 400
            assert (await response.json())["error"]


async def test_declared_size_over_the_cap_is_a_413(make_client: ClientFactory) -> None:
    client = await make_client(ApiConfig(max_upload_bytes=1000))
    async with client.post("/api/v1/videos", json={"title": "x", "size_bytes": 1001}) as response:
        assert response.status == 413
        assert (await response.json())["detail"] == {"size_bytes": 1001, "max_upload_bytes": 1000}


async def test_complete_without_an_object_is_a_409(client: TestClient[Any, Any]) -> None:
    created = await create(client, title="nothing uploaded", size_bytes=100)
    async with client.post(f"/api/v1/videos/{created['video_id']}/complete") as response:
        assert response.status == 409
        assert (await response.json())["error"] == "upload not found in storage"
    async with client.get(f"/api/v1/videos/{created['video_id']}/status") as response:
        assert (await response.json())["status"] == "uploading"


async def test_complete_of_an_unknown_video_is_a_404(client: TestClient[Any, Any]) -> None:
    for video_id in (str(uuid.uuid4()), "not..an-id"):
        async with client.post(f"/api/v1/videos/{video_id}/complete") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "video not found"


async def test_complete_with_another_size_than_declared_is_a_400(client: TestClient[Any, Any]) -> None:
    created = await create(client, title="wrong size", size_bytes=1000)
    await put_bytes(created["upload"]["url"], b"x" * 999)
    async with client.post(f"/api/v1/videos/{created['video_id']}/complete") as response:
        assert response.status == 400
        assert (await response.json())["detail"] == {"declared_size_bytes": 1000, "uploaded_bytes": 999}


async def test_an_object_over_the_cap_is_a_413_and_removed(make_client: ClientFactory, api_settings: Settings) -> None:
    client = await make_client(ApiConfig(max_upload_bytes=1000))
    created = await create(client, title="sneaky", size_bytes=1000)
    await put_bytes(created["upload"]["url"], b"x" * 1500)  # a presigned PUT cannot limit the size
    async with client.post(f"/api/v1/videos/{created['video_id']}/complete") as response:
        assert response.status == 413
        assert (await response.json())["detail"] == {"size_bytes": 1500, "max_upload_bytes": 1000}
    key = f"sources/{created['video_id']}"
    assert await asyncio.to_thread(stored_bytes, api_settings, api_settings.storage.uploads_bucket, key) is None


async def test_complete_when_kafka_does_not_acknowledge_is_a_503_and_can_be_retried(
    make_client: ClientFactory, aiohttp_client: Any, api_settings: Settings
) -> None:
    # An API whose Kafka is unreachable: nothing is acknowledged within its delivery timeout.
    no_kafka = dataclasses.replace(api_settings, kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    broken: TestClient[Any, Any] = await aiohttp_client(await init_app(no_kafka, ApiConfig(kafka_delivery_timeout_s=1)))
    await authorize(broken, role="creator")
    created = await create(broken, title="retry me", size_bytes=100)
    video_id = created["video_id"]
    await put_bytes(created["upload"]["url"], b"y" * 100)
    async with broken.post(f"/api/v1/videos/{video_id}/complete") as response:
        assert response.status == 503
        assert (await response.json())["error"] == "event bus unavailable"
    async with broken.get(f"/api/v1/videos/{video_id}/status") as response:
        status = await response.json()
    assert status["status"] == "uploading" and "complete the upload again" in status["reason"]

    client = await make_client()
    client.session.headers.update(broken.session.headers)  # the same creator retries, on a working API
    async with client.post(f"/api/v1/videos/{video_id}/complete") as response:
        assert response.status == 202, await response.text()


async def test_large_declared_sizes_get_a_multipart_upload(make_client: ClientFactory, api_settings: Settings) -> None:
    client = await make_client(ApiConfig(multipart_threshold=5 * MiB, multipart_part_size=5 * MiB))
    body = os.urandom(6 * MiB + 123)
    created = await create(client, title="multipart", size_bytes=len(body), content_type="video/mp4")
    upload = created["upload"]
    assert upload["type"] == "multipart" and upload["part_size"] == 5 * MiB
    assert [p["part_number"] for p in upload["parts"]] == [1, 2]

    # Completing with a part missing is refused, and leaves the upload open.
    size = upload["part_size"]
    await put_bytes(upload["parts"][0]["url"], body[:size])
    complete = URL(upload["complete_url"])
    assert complete.origin() == client.make_url("/").origin()
    async with client.post(complete.path_qs) as response:
        assert response.status == 400, await response.text()
        assert (await response.json())["detail"]["uploaded_bytes"] == size
    await put_bytes(upload["parts"][1]["url"], body[size:])
    async with client.post(complete.path_qs) as response:
        assert response.status == 202, await response.text()

    video_id = created["video_id"]
    stored = await asyncio.to_thread(
        stored_bytes, api_settings, api_settings.storage.uploads_bucket, f"sources/{video_id}"
    )
    assert stored == body


# --- the form upload ------------------------------------------------------------------------------


async def test_form_upload_over_the_cap_is_refused_from_content_length(client: TestClient[Any, Any]) -> None:
    sent_all = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"--x\r\n"
        await sent_all.wait()  # never: the answer must come before the body is read

    headers = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(3 * 1024**3)}
    started = time.monotonic()
    async with client.post("/api/v1/videos/upload", data=body(), headers=headers) as response:
        assert response.status == 413
        assert response.headers["Connection"] == "close"  # the rest of the body is not worth reading
        assert (await response.json())["detail"]["max_form_upload_bytes"] == 2 * 1024**3
    assert time.monotonic() - started < 5
    sent_all.set()


async def test_a_form_part_with_an_unparseable_header_is_a_400(client: TestClient[Any, Any]) -> None:
    # A control character inside a part's header line (found by the OpenAPI fuzz): aiohttp's parser refuses it,
    # and that is the client's malformed body, not a server error.
    body = b'--x\r\nContent-Disposition: form-data; name="\xc2\xbf\x1b"\r\n\r\nvalue\r\n--x--\r\n'
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    async with client.post("/api/v1/videos/upload", data=body, headers=headers) as response:
        assert response.status == 400
        reply = await response.json()
        assert reply["error"] == "malformed multipart body" and "header" in reply["detail"].lower()


async def test_form_upload_streams_the_file_to_storage(
    client: TestClient[Any, Any], api_settings: Settings, unique: str
) -> None:
    uploaded_topic = api_settings.topic("video.uploaded")
    start = await asyncio.to_thread(end_offsets, api_settings, uploaded_topic)
    file = os.urandom(3 * MiB + 17)
    fields = {"title": f"Form {unique}", "tags": "a, b,,c", "privacy": "private", "thumbnail_time": "2"}
    async with client.post("/api/v1/videos/upload", data=form(fields, file)) as response:
        assert response.status == 202, await response.text()
        answer = await response.json()
    video_id = answer["video_id"]
    assert answer["status"] == "processing"
    assert answer["estimated_processing_time_s"] == 5

    stored = await asyncio.to_thread(
        stored_bytes, api_settings, api_settings.storage.uploads_bucket, f"sources/{video_id}"
    )
    assert stored == file
    events = await asyncio.to_thread(events_for, api_settings, uploaded_topic, start, video_id)
    assert events[0]["size_bytes"] == len(file) and events[0]["original_filename"] == "clip.mp4"
    async with client.get(f"/api/v1/videos/{video_id}") as response:
        video = await response.json()
    assert video["tags"] == ["a", "b", "c"] and video["privacy"] == "private" and video["status"] == "processing"


async def test_form_upload_over_the_cap_while_streaming_leaves_nothing_behind(
    make_client: ClientFactory, api_settings: Settings
) -> None:
    client = await make_client(ApiConfig(max_form_upload_bytes=200_000))
    uploaded_topic = api_settings.topic("video.uploaded")
    start = await asyncio.to_thread(end_offsets, api_settings, uploaded_topic)
    boundary = "vidplat-test-boundary"
    data = multipart_body(boundary, {"title": "too big"}, os.urandom(500_000))

    async def chunked() -> AsyncIterator[bytes]:
        # No Content-Length: only counting the streamed bytes can catch it.
        for offset in range(0, len(data), 64 * 1024):
            yield data[offset : offset + 64 * 1024]

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    async with client.post("/api/v1/videos/upload", data=chunked(), headers=headers) as response:
        assert response.status == 413, await response.text()
        video_id = (await response.json())["detail"]["video_id"]

    catalog = client.app[catalog_key]
    video = await catalog.get_video(video_id)
    assert video.status == "failed" and "exceeded" in video.status_reason
    assert (
        await asyncio.to_thread(stored_bytes, api_settings, api_settings.storage.uploads_bucket, f"sources/{video_id}")
        is None
    )
    nothing = await asyncio.to_thread(events_for, api_settings, uploaded_topic, start, video_id, wait_for=0)
    assert nothing == []


async def test_form_upload_aborted_by_the_client_leaves_nothing_behind(
    client: TestClient[Any, Any], api_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    uploaded_topic = api_settings.topic("video.uploaded")
    start = await asyncio.to_thread(end_offsets, api_settings, uploaded_topic)
    boundary = "vidplat-test-boundary"
    head = multipart_body(boundary, {"title": "aborted"}, b"").removesuffix(f"\r\n--{boundary}--\r\n".encode())
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"POST /api/v1/videos/upload HTTP/1.1\r\nHost: test\r\nContent-Length: {len(head) + 30 * MiB}\r\n"
        f"Authorization: {client.session.headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        + head
    )
    for _ in range(12):  # more than one 10 MiB part: minio has a multipart upload open when the client goes
        writer.write(os.urandom(MiB))
        await writer.drain()
    writer.close()
    await writer.wait_closed()

    failed = []
    for _ in range(100):
        failed = [r.getMessage() for r in caplog.records if "form upload of video" in r.getMessage()]
        if failed:
            break
        await asyncio.sleep(0.1)
    assert failed, "the server did not notice the aborted upload"
    video_id = failed[0].split("form upload of video ", 1)[1].split()[0]
    video = await client.app[catalog_key].get_video(video_id)
    assert video.status == "failed" and "upload stream failed" in video.status_reason
    key = f"sources/{video_id}"
    assert await asyncio.to_thread(stored_bytes, api_settings, api_settings.storage.uploads_bucket, key) is None
    assert await asyncio.to_thread(events_for, api_settings, uploaded_topic, start, video_id, wait_for=0) == []


async def test_form_upload_needs_the_file_after_the_fields(client: TestClient[Any, Any]) -> None:
    data = aiohttp.FormData()
    data.add_field("file", io.BytesIO(b"abc"), filename="a.mp4", content_type="video/mp4")
    data.add_field("title", "late")
    async with client.post("/api/v1/videos/upload", data=data) as response:
        assert response.status == 400
        detail = (await response.json())["detail"]
    assert detail["title"] == "is required" and "last part" in detail["file"]


async def test_form_upload_refuses_unknown_fields(client: TestClient[Any, Any]) -> None:
    async with client.post("/api/v1/videos/upload", data=form({"title": "x", "status": "ready"}, b"abc")) as response:
        assert response.status == 400
        assert (await response.json())["detail"] == {"status": "is read-only"}


# --- the upload CLI -------------------------------------------------------------------------------


class CliOutput(io.StringIO):
    """What the CLI prints, with an event set once it printed the video id."""

    def __init__(self) -> None:
        super().__init__()
        self.has_video_id = asyncio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "video_id: " in self.getvalue():
            self.has_video_id.set()
        return written

    async def video_id(self) -> str:
        await asyncio.wait_for(self.has_video_id.wait(), 20)
        return self.getvalue().split("video_id: ", 1)[1].split()[0]


async def test_upload_cli_uploads_and_follows_the_video_until_ready(
    client: TestClient[Any, Any], api_settings: Settings, tmp_path: Path
) -> None:
    file = tmp_path / "clip.mp4"
    body = os.urandom(700_000)
    file.write_bytes(body)
    # A creator account of its own, signed up by the CLI with a password it generates into the file.
    account = ["--email", f"cli-{uuid.uuid4().hex[:8]}@example.test", "--password-file", str(tmp_path / "pw")]
    options = upload_cli.parse_args(
        [str(file), "--title", "cli", "--tags", "a,b", "--api", str(client.make_url("")), "--timeout", "30"]
        + [*account, "--sign-up"]
    )
    options.poll_interval = 0.2
    out, err = CliOutput(), io.StringIO()
    cli = asyncio.create_task(upload_cli.run(options, out, err))

    # Stand in for the pipeline: playable, then ready.
    video_id = await out.video_id()
    catalog = client.app[catalog_key]
    for status in ("playable", "ready"):
        await asyncio.sleep(0.5)
        await catalog.set_status(video_id, status, None, datetime.now(UTC))

    assert await asyncio.wait_for(cli, 30) == upload_cli.EXIT_READY
    printed = [line.split(" ", 1)[1] for line in out.getvalue().splitlines() if line[:2].isdigit()]
    assert printed == ["processing", "playable", "ready"]
    assert f"HLS: {client.make_url(f'/api/v1/videos/{video_id}/playlist.m3u8')}" in out.getvalue()
    assert "DASH: " in out.getvalue() and "progressive: " in out.getvalue()
    assert "100.0%" in err.getvalue() and "MB/s" in err.getvalue()
    stored = await asyncio.to_thread(
        stored_bytes, api_settings, api_settings.storage.uploads_bucket, f"sources/{video_id}"
    )
    assert stored == body
    # The same account logs in the next time (no --sign-up needed); a wrong password is refused.
    again = upload_cli.parse_args([str(file), "--title", "cli", "--api", str(client.make_url("")), *account])
    async with aiohttp.ClientSession() as session:
        assert "Authorization" in await upload_cli.authenticate(session, again)
    (tmp_path / "pw").write_text("not the password")
    err = io.StringIO()
    assert await upload_cli.run(again, io.StringIO(), err) == upload_cli.EXIT_FAILED
    assert "login refused: HTTP 401" in err.getvalue()


async def test_upload_cli_without_credentials_is_told_to_sign_in(client: TestClient[Any, Any], tmp_path: Path) -> None:
    file = tmp_path / "clip.mp4"
    file.write_bytes(os.urandom(1000))
    options = upload_cli.parse_args([str(file), "--title", "cli", "--api", str(client.make_url(""))])
    options.token = None
    err = io.StringIO()
    assert await upload_cli.run(options, io.StringIO(), err) == upload_cli.EXIT_FAILED
    assert "create refused: HTTP 401" in err.getvalue() and "--email" in err.getvalue()
    viewer, _ = await sign_up(client, role="viewer")
    options.token = viewer["Authorization"].removeprefix("Bearer ")
    err = io.StringIO()
    assert await upload_cli.run(options, io.StringIO(), err) == upload_cli.EXIT_FAILED
    assert "create refused: HTTP 403" in err.getvalue()


async def test_upload_cli_exit_codes_for_timeout_and_failure(client: TestClient[Any, Any], tmp_path: Path) -> None:
    file = tmp_path / "clip.mp4"
    file.write_bytes(os.urandom(10_000))
    token = client.session.headers["Authorization"].removeprefix("Bearer ")
    args = [str(file), "--title", "cli", "--api", str(client.make_url("")), "--token", token]
    options = upload_cli.parse_args([*args, "--timeout", "1"])
    options.poll_interval = 0.2
    assert await upload_cli.run(options, io.StringIO(), io.StringIO()) == upload_cli.EXIT_TIMEOUT

    options = upload_cli.parse_args([*args, "--timeout", "30"])
    options.poll_interval = 0.2
    out = CliOutput()
    cli = asyncio.create_task(upload_cli.run(options, out, io.StringIO()))
    video_id = await out.video_id()
    await client.app[catalog_key].set_status(video_id, "failed", "no video stream", datetime.now(UTC))
    assert await asyncio.wait_for(cli, 30) == upload_cli.EXIT_FAILED
    assert "failed: no video stream" in out.getvalue()

    refused = upload_cli.parse_args([*args[:1], "--title", " ", *args[3:]])
    err = io.StringIO()
    assert await upload_cli.run(refused, io.StringIO(), err) == upload_cli.EXIT_FAILED
    assert "create refused: HTTP 400" in err.getvalue()
