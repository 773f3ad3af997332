"""Authorization on videos against the real servers: who may create, complete, read, play, edit and delete.

The security cases of issue 5: user B cannot read, edit, delete, presign or play user A's private video; a
playback token for video X is refused on video Y; a PATCH of owner or status is refused. Videos are created
through the API by a creator; playback files are put straight into the media bucket (the pipeline's work is
not under test here). The module publishes to topics of its own (a fresh TOPIC_PREFIX).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin

import jwt
import pytest
from aiohttp.test_utils import TestClient
from confluent_kafka.admin import NewTopic

from api.access import PLAYBACK_AUDIENCE
from api.app import init_app
from api.config import ApiConfig
from api.keys import auth_key, catalog_key
from api.tokens import ALGORITHM
from common.kafka import admin_client
from common.settings import KafkaSettings, Settings
from common.storage import storage_client
from sinks.catalog import Catalog
from tests.auth_tools import sign_up
from tests.kafka_tools import end_offsets, events_for

pytestmark = pytest.mark.integration

Client = TestClient[Any, Any]
Headers = dict[str, str]

MASTER = b'#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000,CODECS="avc1.64001e"\n360p/playlist.m3u8\n'
MEDIA = (
    b'#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:4.0,\nseg_00001.m4s\n#EXTINF:4.0,\nseg_00002.m4s\n#EXT-X-ENDLIST\n'
)
MPD = (
    b'<MPD><Period><AdaptationSet><SegmentTemplate initialization="$RepresentationID$/init.mp4"/>'
    b"</AdaptationSet></Period></MPD>"
)
OBJECTS = {
    "master.m3u8": MASTER,
    "manifest.mpd": MPD,
    "360p/playlist.m3u8": MEDIA,
    "360p/init.mp4": b"\x00\x00\x00\x18ftypiso6",
    "360p/seg_00001.m4s": b"segment one",
    "360p/seg_00002.m4s": b"segment two",
}


@pytest.fixture(scope="module")
def api_settings(live_servers: Settings) -> Iterator[Settings]:
    settings = dataclasses.replace(live_servers, topic_prefix=f"test-access-{uuid.uuid4().hex[:8]}.")
    topics = [settings.topic("video.uploaded"), settings.topic("video.lifecycle")]
    admin = admin_client(settings.kafka)
    for future in admin.create_topics(
        [NewTopic(name, 1, settings.kafka.default_replication) for name in topics]
    ).values():
        future.result(timeout=30)
    yield settings
    for future in admin.delete_topics(topics).values():
        future.result(timeout=30)


@pytest.fixture
async def client(aiohttp_client: Any, api_settings: Settings) -> Client:
    app_client: Client = await aiohttp_client(await init_app(api_settings))
    return app_client


@pytest.fixture
async def alice(client: Client) -> Headers:
    headers, _ = await sign_up(client, role="creator")
    return headers


@pytest.fixture
async def bob(client: Client) -> Headers:
    headers, _ = await sign_up(client, role="creator")
    return headers


async def create(client: Client, headers: Headers, privacy: str = "private", **extra: Any) -> str:
    body = {"title": f"access {uuid.uuid4().hex[:6]}", "privacy": privacy, "size_bytes": 1000, **extra}
    async with client.post("/api/v1/videos", json=body, headers=headers) as response:
        assert response.status == 201, await response.text()
        video_id: str = (await response.json())["video_id"]
        return video_id


def put_media(settings: Settings, video_id: str) -> None:
    import io

    client = storage_client(settings.storage)
    for name, data in OBJECTS.items():
        client.put_object(settings.storage.media_bucket, f"videos/{video_id}/{name}", io.BytesIO(data), len(data))


def media_keys(settings: Settings, video_id: str) -> list[str]:
    client = storage_client(settings.storage)
    objects = client.list_objects(settings.storage.media_bucket, prefix=f"videos/{video_id}/", recursive=True)
    return [o.object_name for o in objects if o.object_name and not o.object_name.endswith("/")]  # no folders


async def playable(client: Client, api_settings: Settings, headers: Headers, privacy: str = "private") -> str:
    """A video of the account behind ``headers``, with its files in storage and a rendition row, playable."""
    video_id = await create(client, headers, privacy)
    catalog: Catalog = client.app[catalog_key]
    await catalog.declare_variant(video_id, "360p", "video", "H264", 640, 360, 25.0, 1)
    await catalog.set_status(video_id, "playable", None, datetime.now(UTC))
    await asyncio.to_thread(put_media, api_settings, video_id)
    return video_id


async def status_of(client: Client, method: str, path: str, headers: Headers | None = None, **kw: Any) -> int:
    async with client.request(method, path, headers=headers or {}, **kw) as response:
        await response.read()
        return response.status


async def video_json(client: Client, video_id: str, headers: Headers) -> dict[str, Any]:
    async with client.get(f"/api/v1/videos/{video_id}", headers=headers) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


# --- creating and uploading -----------------------------------------------------------------------


async def test_only_creators_get_presigned_uploads(client: Client, alice: Headers) -> None:
    viewer, _ = await sign_up(client, role="viewer")
    body = {"title": "t", "size_bytes": 1000}
    assert await status_of(client, "POST", "/api/v1/videos", json=body) == 401
    assert await status_of(client, "POST", "/api/v1/videos", viewer, json=body) == 403
    assert await status_of(client, "POST", "/api/v1/videos/upload", viewer, data={"title": "t"}) == 403
    assert await status_of(client, "POST", "/api/v1/videos/upload", data={"title": "t"}) == 401
    assert await status_of(client, "POST", "/api/v1/videos", alice, json=body) == 201


async def test_the_owner_is_the_creator_and_cannot_be_chosen(client: Client, alice: Headers, bob: Headers) -> None:
    body = {"title": "t", "size_bytes": 1000, "owner_id": "someone-else"}
    async with client.post("/api/v1/videos", json=body, headers=bob) as response:
        assert response.status == 400
        assert (await response.json())["detail"]["owner_id"] == "is read-only"
    video_id = await create(client, alice, "public")
    _, alice_principal = None, (await client.get("/api/v1/me", headers=alice))
    async with alice_principal as response:
        account_id = (await response.json())["account_id"]
    assert (await video_json(client, video_id, {}))["owner_id"] == account_id


async def test_b_cannot_complete_a_upload(client: Client, alice: Headers, bob: Headers) -> None:
    private = await create(client, alice, "private")
    public = await create(client, alice, "public")
    assert await status_of(client, "POST", f"/api/v1/videos/{private}/complete", bob) == 404
    assert await status_of(client, "POST", f"/api/v1/videos/{public}/complete", bob) == 403
    assert await status_of(client, "POST", f"/api/v1/videos/{public}/complete") == 401
    # The owner gets past authorization (nothing was uploaded: a conflict, not a refusal).
    assert await status_of(client, "POST", f"/api/v1/videos/{private}/complete", alice) == 409


# --- reading and playing --------------------------------------------------------------------------


async def test_b_cannot_read_a_private_video(client: Client, alice: Headers, bob: Headers) -> None:
    video_id = await create(client, alice, "private")
    for headers in (bob, {}):
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}", headers) == 404
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}/status", headers) == 404
    assert (await video_json(client, video_id, alice))["privacy"] == "private"
    admin, _ = await sign_up(client, role="admin")
    assert (await video_json(client, video_id, admin))["video_id"] == video_id


async def test_b_cannot_play_a_private_video(
    client: Client, api_settings: Settings, alice: Headers, bob: Headers
) -> None:
    video_id = await playable(client, api_settings, alice)
    for path in ("playlist.m3u8", "manifest.mpd", "360p/playlist.m3u8", "360p/init.mp4", "360p/seg_00001.m4s"):
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}/{path}", bob) == 404, path
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}/{path}") == 404, path
    # The owner plays with the bearer header too; a shared cache never keeps it.
    async with client.get(f"/api/v1/videos/{video_id}/360p/seg_00001.m4s", headers=alice) as response:
        assert response.status == 200
        assert response.headers["Cache-Control"].startswith("private")


async def test_a_playback_token_covers_the_manifests_and_every_segment(
    client: Client, api_settings: Settings, alice: Headers
) -> None:
    video_id = await playable(client, api_settings, alice)
    video = await video_json(client, video_id, alice)
    token = video["playback_token"]["token"]
    assert datetime.fromisoformat(video["playback_token"]["expires_at"]) > datetime.now(UTC)
    master_url = video["urls"]["hls"]
    assert f"/api/v1/videos/{video_id}/p/{token}/playlist.m3u8" in master_url
    # Follow the manifests as a player does: no header, every URI resolved against the one that named it.
    fetched = []

    async def get(url: str) -> bytes:
        path = url[url.index("/api/") :]
        async with client.get(path) as response:
            assert response.status == 200, (path, await response.text())
            assert response.headers["Cache-Control"].startswith("private")
            fetched.append(path)
            return await response.read()

    master = await get(master_url)
    media_url = urljoin(master_url, master.decode().splitlines()[-1])
    media = (await get(media_url)).decode()
    uris = ["init.mp4"] + [line for line in media.splitlines() if line and not line.startswith("#")]
    for uri in uris:
        await get(urljoin(media_url, uri))
    mpd_url = video["urls"]["dash"]
    await get(mpd_url)
    await get(urljoin(mpd_url, "360p/init.mp4"))  # the MPD's SegmentTemplate, resolved the same way
    assert len(fetched) == 7 and all(f"/p/{token}/" in path for path in fetched)


async def test_a_playback_token_for_x_is_refused_on_y(client: Client, api_settings: Settings, alice: Headers) -> None:
    x = await playable(client, api_settings, alice)
    y = await playable(client, api_settings, alice)
    token_x = (await video_json(client, x, alice))["playback_token"]["token"]
    for path in ("playlist.m3u8", "360p/seg_00001.m4s"):
        assert await status_of(client, "GET", f"/api/v1/videos/{x}/p/{token_x}/{path}") == 200
        assert await status_of(client, "GET", f"/api/v1/videos/{y}/p/{token_x}/{path}") == 403
        # Even the owner's header does not make a wrong token right.
        assert await status_of(client, "GET", f"/api/v1/videos/{y}/p/{token_x}/{path}", alice) == 403


async def test_expired_forged_and_access_tokens_do_not_play(
    client: Client, api_settings: Settings, alice: Headers
) -> None:
    video_id = await playable(client, api_settings, alice)
    tokens = client.app[auth_key].tokens
    now = datetime.now(UTC)
    claims = {"iss": tokens.settings.jwt_issuer, "aud": PLAYBACK_AUDIENCE, "vid": video_id, "sub": "x", "iat": now}
    bad = {
        "expired": jwt.encode({**claims, "exp": now - timedelta(minutes=5)}, tokens.playback_key, ALGORITHM),
        "wrong key": jwt.encode({**claims, "exp": now + timedelta(minutes=5)}, b"k" * 32, ALGORITHM),
        "access token": alice["Authorization"].removeprefix("Bearer "),
        "garbage": "not-a-token",
    }
    for name, token in bad.items():
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}/p/{token}/playlist.m3u8") == 403, name


async def test_unlisted_plays_for_anyone_with_the_link(
    client: Client, api_settings: Settings, alice: Headers, bob: Headers
) -> None:
    video_id = await playable(client, api_settings, alice, "unlisted")
    for headers in (bob, {}):
        body = await video_json(client, video_id, headers)
        assert body["playback_token"] is None and "/p/" not in body["urls"]["hls"]
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}/playlist.m3u8", headers) == 200
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}/360p/seg_00002.m4s", headers) == 200


# --- editing --------------------------------------------------------------------------------------


async def test_the_owner_edits_metadata(client: Client, alice: Headers) -> None:
    video_id = await create(client, alice, "private")
    change = {"title": "New title", "tags": ["a", "b"], "privacy": "public", "description": None}
    async with client.patch(f"/api/v1/videos/{video_id}", json=change, headers=alice) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert (body["title"], body["tags"], body["privacy"], body["description"]) == (
        "New title",
        ["a", "b"],
        "public",
        None,
    )
    # Public now: anyone reads it.
    assert (await video_json(client, video_id, {}))["title"] == "New title"


async def test_a_patch_of_owner_or_status_is_refused(client: Client, alice: Headers, bob: Headers) -> None:
    _, bob_principal = await sign_up(client, role="creator")
    video_id = await create(client, alice, "public")
    for change, field in (
        ({"owner_id": bob_principal.account_id}, "owner_id"),
        ({"status": "ready"}, "status"),
        ({"title": "ok", "status": "ready"}, "status"),
        ({"video_id": "other"}, "video_id"),
        ({"size_bytes": 5}, "size_bytes"),
        ({"duration_s": 1.0}, "duration_s"),
        ({"is_admin": True}, "is_admin"),
        ({"title": ""}, "title"),
        ({"privacy": "secret"}, "privacy"),
    ):
        async with client.patch(f"/api/v1/videos/{video_id}", json=change, headers=alice) as response:
            assert response.status == 400, change
            assert field in (await response.json())["detail"], change
    assert await status_of(client, "PATCH", f"/api/v1/videos/{video_id}", alice, json={}) == 400
    video = await client.app[catalog_key].get_video(video_id)
    assert video.status == "uploading" and video.owner_id != bob_principal.account_id
    assert video.title.startswith("access ")


async def test_b_cannot_edit_a_video(client: Client, alice: Headers, bob: Headers) -> None:
    private = await create(client, alice, "private")
    public = await create(client, alice, "public")
    change = {"title": "taken over"}
    assert await status_of(client, "PATCH", f"/api/v1/videos/{private}", bob, json=change) == 404
    assert await status_of(client, "PATCH", f"/api/v1/videos/{public}", bob, json=change) == 403
    assert await status_of(client, "PATCH", f"/api/v1/videos/{public}", json=change) == 401
    admin, _ = await sign_up(client, role="admin")
    assert await status_of(client, "PATCH", f"/api/v1/videos/{private}", admin, json={"title": "moderated"}) == 200
    for video_id in (private, public):
        assert (await client.app[catalog_key].get_video(video_id)).title != "taken over"


async def test_a_privacy_change_is_announced_once_and_nothing_else_is(client: Client, api_settings: Settings) -> None:
    owner, principal = await sign_up(client, role="creator")
    video_id = await create(client, owner, "public")
    lifecycle = api_settings.topic("video.lifecycle")
    start = await asyncio.to_thread(end_offsets, api_settings, lifecycle)
    for change in ({"title": "same privacy"}, {"privacy": "public"}, {"privacy": "private", "title": "hidden"}):
        assert await status_of(client, "PATCH", f"/api/v1/videos/{video_id}", owner, json=change) == 200
    [event] = await asyncio.to_thread(events_for, api_settings, lifecycle, start, video_id)
    assert (event["privacy"], event["previous_privacy"]) == ("PRIVATE", "PUBLIC")
    assert event["changed_by"] == principal.account_id
    # Only the one change: the edits that kept the privacy published nothing.
    assert len(await asyncio.to_thread(events_for, api_settings, lifecycle, start, video_id, wait_for=0)) == 1


async def test_an_unannounced_privacy_change_goes_back_and_is_a_503(
    aiohttp_client: Any, api_settings: Settings
) -> None:
    # An API whose Kafka is unreachable: the edge would never hear of the change, so the change must not stand.
    no_kafka = dataclasses.replace(api_settings, kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    broken: Client = await aiohttp_client(await init_app(no_kafka, ApiConfig(kafka_delivery_timeout_s=1)))
    owner, _ = await sign_up(broken, role="creator")
    video_id = await create(broken, owner, "public")
    change = {"privacy": "private", "title": "renamed"}
    async with broken.patch(f"/api/v1/videos/{video_id}", json=change, headers=owner) as response:
        assert response.status == 503, await response.text()
    video = await broken.app[catalog_key].get_video(video_id)
    assert video.privacy == "public"  # still public, so a repeat of the PATCH is a change again


# --- deleting -------------------------------------------------------------------------------------


async def test_b_cannot_delete_a_video(client: Client, api_settings: Settings, alice: Headers, bob: Headers) -> None:
    private = await playable(client, api_settings, alice, "private")
    public = await playable(client, api_settings, alice, "public")
    assert await status_of(client, "DELETE", f"/api/v1/videos/{private}", bob) == 404
    assert await status_of(client, "DELETE", f"/api/v1/videos/{public}", bob) == 403
    assert await status_of(client, "DELETE", f"/api/v1/videos/{public}") == 401
    assert await status_of(client, "GET", f"/api/v1/videos/{public}/playlist.m3u8") == 200
    assert len(await asyncio.to_thread(media_keys, api_settings, private)) == len(OBJECTS)


async def test_delete_removes_objects_and_rows_announces_it_and_is_404_after(
    client: Client, api_settings: Settings, alice: Headers, bob: Headers
) -> None:
    video_id = await playable(client, api_settings, alice, "private")
    token = (await video_json(client, video_id, alice))["playback_token"]["token"]
    lifecycle = api_settings.topic("video.lifecycle")
    start = await asyncio.to_thread(end_offsets, api_settings, lifecycle)
    assert await status_of(client, "DELETE", f"/api/v1/videos/{video_id}", alice) == 204

    assert await asyncio.to_thread(media_keys, api_settings, video_id) == []
    catalog: Catalog = client.app[catalog_key]
    assert await catalog.variants(video_id) == []
    assert await catalog.segments(video_id, "360p") == []
    row = await catalog.get_video(video_id)
    assert row.status == "deleted" and row.deleted_at is not None
    events = await asyncio.to_thread(events_for, api_settings, lifecycle, start, video_id)
    assert [(e["status"], e["reason"]) for e in events] == [("DELETED", "deleted by its owner")]
    # A late event of the pipeline (a READY still in flight) does not bring it back.
    await catalog.set_status(video_id, "ready", None, datetime.now(UTC) + timedelta(seconds=1))
    assert (await catalog.get_video(video_id)).status == "deleted"
    for path in ("", "/status", "/playlist.m3u8", "/360p/seg_00001.m4s", f"/p/{token}/playlist.m3u8"):
        assert await status_of(client, "GET", f"/api/v1/videos/{video_id}{path}", alice) == 404, path
    assert await status_of(client, "PATCH", f"/api/v1/videos/{video_id}", alice, json={"title": "x"}) == 404
    assert await status_of(client, "POST", f"/api/v1/videos/{video_id}/complete", alice) == 404
    # The owner may repeat a delete (to finish one cut short); anyone else still finds nothing.
    assert await status_of(client, "DELETE", f"/api/v1/videos/{video_id}", alice) == 204
    assert await status_of(client, "DELETE", f"/api/v1/videos/{video_id}", bob) == 404


async def test_an_admin_deletes_any_video_even_from_before_accounts(
    client: Client, api_settings: Settings, alice: Headers
) -> None:
    catalog: Catalog = client.app[catalog_key]
    legacy = str(uuid.uuid4())
    assert await catalog.create_video(legacy, "anonymous", {"title": "old"}, "uploads", f"sources/{legacy}", None)
    assert await status_of(client, "GET", f"/api/v1/videos/{legacy}") == 200  # old public videos still play
    assert await status_of(client, "PATCH", f"/api/v1/videos/{legacy}", alice, json={"title": "mine"}) == 403
    admin, _ = await sign_up(client, role="admin")
    assert await status_of(client, "DELETE", f"/api/v1/videos/{legacy}", admin) == 204
    assert await status_of(client, "GET", f"/api/v1/videos/{legacy}") == 404
    assert (await catalog.get_video(legacy)).status_reason == "deleted by an admin"
