"""Playback routes against the real servers, on objects the tests put into the media bucket themselves.

Each test makes a fresh video row (a UUID) in the catalogue at the status it needs and writes the objects
it reads under ``videos/{video_id}/``; nothing depends on the transcoding pipeline.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from minio import Minio
from yarl import URL

from api.app import init_app
from api.config import ApiConfig
from api.keys import catalog_key
from common.settings import Settings
from common.storage import storage_client
from sinks.catalog import Catalog

pytestmark = pytest.mark.integration

IMMUTABLE = "public, max-age=31536000, immutable"
SEGMENT = bytes(i % 251 for i in range(100_000))

PutObjects = Callable[[str, dict[str, bytes]], Awaitable[None]]


@pytest.fixture
async def client(aiohttp_client: Any, live_servers: Settings) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(await init_app(live_servers))
    return client


@pytest.fixture(scope="module")
def media(live_servers: Settings) -> Minio:
    return storage_client(live_servers.storage)


@pytest.fixture
def put_objects(media: Minio, live_servers: Settings) -> PutObjects:
    async def put(video_id: str, objects: dict[str, bytes]) -> None:
        def put_all() -> None:
            for name, body in objects.items():
                media.put_object(
                    live_servers.storage.media_bucket, f"videos/{video_id}/{name}", io.BytesIO(body), len(body)
                )

        await asyncio.to_thread(put_all)

    return put


async def make_video(client: TestClient[Any, Any], status: str) -> str:
    catalog: Catalog = client.app[catalog_key]
    video_id = str(uuid.uuid4())
    assert await catalog.create_video(video_id, "tester", {"title": "playback test"}, "uploads", "sources/x", None)
    if status != "uploading":
        await catalog.set_status(video_id, status, "test" if status == "failed" else None, datetime.now(UTC))
    return video_id


@pytest.fixture
async def playable(client: TestClient[Any, Any], put_objects: PutObjects) -> str:
    video_id = await make_video(client, "playable")
    await put_objects(
        video_id,
        {
            "master.m3u8": b"#EXTM3U\n",
            "manifest.mpd": b"<MPD/>",
            "360p/init.mp4": b"\x00\x00\x00\x18ftypiso6",
            "360p/seg_00001.m4s": SEGMENT,
            "360p/index.m3u8": b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n",
            "360p/playlist.m3u8": b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n",
        },
    )
    return video_id


# --- bytes, ranges and validators -----------------------------------------------------------------


async def test_a_segment_is_served_whole_with_its_headers(client: TestClient[Any, Any], playable: str) -> None:
    async with client.get(f"/api/v1/videos/{playable}/360p/seg_00001.m4s") as response:
        assert response.status == 200
        assert await response.read() == SEGMENT
        assert response.headers["Content-Type"] == "video/iso.segment"
        assert response.headers["Content-Length"] == str(len(SEGMENT))
        assert response.headers["Accept-Ranges"] == "bytes"
        assert response.headers["Cache-Control"] == IMMUTABLE
        assert response.headers["ETag"].startswith('"') and len(response.headers["ETag"]) > 2
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Content-Range" in response.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-199", 100, 199),
        ("bytes=99000-", 99000, 99999),
        ("bytes=-50", 99950, 99999),
        ("bytes=0-999999999", 0, 99999),
        ("bytes=-200000", 0, 99999),
        ("bytes=99999-99999", 99999, 99999),
    ],
)
async def test_a_single_range_is_a_206_with_exactly_those_bytes(
    client: TestClient[Any, Any], playable: str, header: str, first: int, last: int
) -> None:
    async with client.get(f"/api/v1/videos/{playable}/360p/seg_00001.m4s", headers={"Range": header}) as response:
        assert response.status == 206
        assert await response.read() == SEGMENT[first : last + 1]
        assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(SEGMENT)}"
        assert response.headers["Content-Length"] == str(last - first + 1)
        assert response.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize("header", ["bytes=100000-", "bytes=200000-300000", "bytes=-0"])
async def test_an_unsatisfiable_range_is_a_416(client: TestClient[Any, Any], playable: str, header: str) -> None:
    async with client.get(f"/api/v1/videos/{playable}/360p/seg_00001.m4s", headers={"Range": header}) as response:
        assert response.status == 416
        assert response.headers["Content-Range"] == f"bytes */{len(SEGMENT)}"
        assert (await response.json())["error"] == "range not satisfiable"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=abc", "items=0-9", "bytes=9-0"])
async def test_several_or_malformed_ranges_get_the_whole_object(
    client: TestClient[Any, Any], playable: str, header: str
) -> None:
    async with client.get(f"/api/v1/videos/{playable}/360p/seg_00001.m4s", headers={"Range": header}) as response:
        assert response.status == 200
        assert await response.read() == SEGMENT


async def test_if_none_match_with_the_etag_is_a_304(client: TestClient[Any, Any], playable: str) -> None:
    path = f"/api/v1/videos/{playable}/360p/seg_00001.m4s"
    async with client.get(path) as response:
        etag = response.headers["ETag"]
        await response.read()
    async with client.get(path, headers={"If-None-Match": etag}) as response:
        assert response.status == 304
        assert await response.read() == b""
        assert response.headers["ETag"] == etag
        assert response.headers["Cache-Control"] == IMMUTABLE
    async with client.get(path, headers={"If-None-Match": f'"other", W/{etag}'}) as response:
        assert response.status == 304
    async with client.get(path, headers={"If-None-Match": '"other"'}) as response:
        assert response.status == 200
        assert await response.read() == SEGMENT


async def test_if_range_with_a_stale_etag_gets_the_whole_object(client: TestClient[Any, Any], playable: str) -> None:
    path = f"/api/v1/videos/{playable}/360p/seg_00001.m4s"
    async with client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"stale"'}) as response:
        assert response.status == 200
        assert await response.read() == SEGMENT
    async with client.head(path) as response:
        etag = response.headers["ETag"]
    async with client.get(path, headers={"Range": "bytes=0-9", "If-Range": etag}) as response:
        assert response.status == 206
        assert await response.read() == SEGMENT[:10]


async def test_head_gives_the_headers_without_the_body(client: TestClient[Any, Any], playable: str) -> None:
    async with client.head(f"/api/v1/videos/{playable}/360p/seg_00001.m4s") as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(SEGMENT))
        assert response.headers["Content-Type"] == "video/iso.segment"
        assert await response.read() == b""
    async with client.head(f"/api/v1/videos/{playable}/360p/seg_00001.m4s", headers={"Range": "bytes=-10"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes {len(SEGMENT) - 10}-{len(SEGMENT) - 1}/{len(SEGMENT)}"


# --- content types and cache lifetimes ------------------------------------------------------------


async def test_manifests_are_cached_briefly_while_playable(client: TestClient[Any, Any], playable: str) -> None:
    for path, content_type, body in (
        ("playlist.m3u8", "application/vnd.apple.mpegurl", b"#EXTM3U\n"),
        ("manifest.mpd", "application/dash+xml", b"<MPD/>"),
        ("360p/index.m3u8", "application/vnd.apple.mpegurl", b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n"),
        # The name processors/media/manifests.py gives media playlists.
        ("360p/playlist.m3u8", "application/vnd.apple.mpegurl", b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n"),
    ):
        async with client.get(f"/api/v1/videos/{playable}/{path}") as response:
            assert response.status == 200, path
            assert response.headers["Content-Type"] == content_type
            assert response.headers["Cache-Control"] == "public, max-age=5"
            assert await response.read() == body
    async with client.get(f"/api/v1/videos/{playable}/360p/init.mp4") as response:
        assert response.headers["Content-Type"] == "video/mp4"
        assert response.headers["Cache-Control"] == IMMUTABLE
        await response.read()


async def test_a_ready_video_serves_everything_with_long_lifetimes(
    client: TestClient[Any, Any], put_objects: PutObjects
) -> None:
    video_id = await make_video(client, "ready")
    files = {
        "master.m3u8": b"#EXTM3U\n",
        "manifest.mpd": b"<MPD/>",
        "progressive.mp4": os.urandom(300_000),
        "poster.jpg": b"\xff\xd8\xff\xe0jpeg",
        "storyboard.vtt": b"WEBVTT\n",
        "storyboard.jpg": b"\xff\xd8\xff\xe0sprite",
        "360p/iframes.m3u8": b"#EXTM3U\n#EXT-X-I-FRAMES-ONLY\n",
    }
    await put_objects(video_id, files)
    for route, name, content_type, cache in (
        ("playlist.m3u8", "master.m3u8", "application/vnd.apple.mpegurl", "public, max-age=60"),
        ("manifest.mpd", "manifest.mpd", "application/dash+xml", "public, max-age=60"),
        ("stream", "progressive.mp4", "video/mp4", IMMUTABLE),
        ("poster.jpg", "poster.jpg", "image/jpeg", IMMUTABLE),
        ("storyboard.vtt", "storyboard.vtt", "text/vtt", IMMUTABLE),
        ("storyboard.jpg", "storyboard.jpg", "image/jpeg", IMMUTABLE),
        ("360p/iframes.m3u8", "360p/iframes.m3u8", "application/vnd.apple.mpegurl", "public, max-age=60"),
    ):
        async with client.get(f"/api/v1/videos/{video_id}/{route}") as response:
            assert response.status == 200, route
            assert response.headers["Content-Type"] == content_type, route
            assert response.headers["Cache-Control"] == cache, route
            assert await response.read() == files[name], route

    async with client.get(f"/api/v1/videos/{video_id}") as response:
        urls = (await response.json())["urls"]
    assert urls["hls"].endswith(f"/api/v1/videos/{video_id}/playlist.m3u8")
    assert urls["dash"].endswith("/manifest.mpd") and urls["progressive"].endswith("/stream")


# --- what is not served ---------------------------------------------------------------------------


async def test_a_manifest_before_the_video_is_playable_is_a_404_with_a_reason(
    client: TestClient[Any, Any], put_objects: PutObjects
) -> None:
    video_id = await make_video(client, "processing")
    await put_objects(video_id, {"master.m3u8": b"#EXTM3U\n"})
    async with client.get(f"/api/v1/videos/{video_id}/playlist.m3u8") as response:
        assert response.status == 404
        assert await response.json() == {"error": "video is not playable yet", "detail": {"status": "processing"}}


@pytest.mark.parametrize("status", ["failed", "deleted"])
async def test_failed_and_deleted_videos_are_404(
    client: TestClient[Any, Any], put_objects: PutObjects, status: str
) -> None:
    video_id = await make_video(client, status)
    await put_objects(video_id, {"master.m3u8": b"#EXTM3U\n", "360p/seg_00001.m4s": b"x"})
    for path in ("playlist.m3u8", "360p/seg_00001.m4s"):
        async with client.get(f"/api/v1/videos/{video_id}/{path}") as response:
            assert response.status == 404
            assert (await response.json())["error"] == "video not found"


async def test_unknown_videos_and_missing_files_are_404(client: TestClient[Any, Any], playable: str) -> None:
    for path in (
        f"/api/v1/videos/{uuid.uuid4()}/playlist.m3u8",
        f"/api/v1/videos/{uuid.uuid4()}/360p/seg_00001.m4s",
        f"/api/v1/videos/{playable}/360p/seg_00002.m4s",
        f"/api/v1/videos/{playable}/720p/init.mp4",
        f"/api/v1/videos/{playable}/poster.jpg",
    ):
        async with client.get(path) as response:
            assert response.status == 404, path
            assert response.headers["Content-Type"].startswith("application/json")
            await response.read()


@pytest.mark.parametrize(
    "path",
    [
        "{video}/..%2f..%2fsources%2fx",
        "{video}/360p/..%2fmaster.m3u8",
        "{video}/..%2f360p/seg_00001.m4s",
        "{video}/360p%2f..%2f360p/init.mp4",
        "{video}/360p/%2e%2e%2fmaster.m3u8",
        "{video}/%2e%2e/master.m3u8",
        "..%2f..%2fuploads%2fsources/playlist.m3u8",
        "%2e%2e/playlist.m3u8",
        "{video}/360P/init.mp4",
        "{video}/360p/seg_1.m4s",
        "{video}/360p/seg_00001.m4s.bak",
        "{video}/360p/master.m3u8",
        "{video}/360p_x/init.mp4",
        "{video}/360p/init.mp4%00",
        "{video}/" + "a" * 33 + "/init.mp4",
        "{video}/master.m3u8",
        "{video}/progressive.mp4",
    ],
)
async def test_traversal_and_unknown_names_are_404(client: TestClient[Any, Any], playable: str, path: str) -> None:
    url = URL("/api/v1/videos/" + path.format(video=playable), encoded=True)
    async with client.get(url) as response:
        assert response.status == 404, path
        await response.read()


async def test_cors_preflight_for_a_range_request(client: TestClient[Any, Any], playable: str) -> None:
    headers = {
        "Origin": "https://player.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    async with client.options(f"/api/v1/videos/{playable}/360p/seg_00001.m4s", headers=headers) as response:
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Range" in response.headers["Access-Control-Allow-Headers"]


async def test_cors_origins_from_an_allow_list(aiohttp_client: Any, live_servers: Settings, playable: str) -> None:
    config = ApiConfig(cors_origins=("https://app.example",))
    client: TestClient[Any, Any] = await aiohttp_client(await init_app(live_servers, config))
    path = f"/api/v1/videos/{playable}/360p/init.mp4"
    async with client.get(path, headers={"Origin": "https://app.example"}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Origin" in response.headers.getall("Vary")
        assert "ETag" in response.headers["Access-Control-Expose-Headers"]
        await response.read()
    async with client.get(path, headers={"Origin": "https://evil.example"}) as response:
        assert "Access-Control-Allow-Origin" not in response.headers
        await response.read()
