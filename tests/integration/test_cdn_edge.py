"""The CDN edge against the real servers: Varnish (infra/conf/varnish/edge.vcl) in front of a real API process,
and a real control worker whose `purge_cdn_edge` agent bans what changed.

The platform of this module has topics of its own (a fresh TOPIC_PREFIX), its own API, edge and metrics ports,
and its files in a directory Varnish's unprivileged users can read. Videos are created through the edge as a
creator would; their playback files are put straight into the media bucket and the rows made playable (the
pipeline's work is not under test here). Every request below goes through the edge unless it says otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cassandra.cluster import Session

from common.cassandra import cassandra_session
from common.kafka import admin_client
from common.settings import Settings
from common.storage import storage_client
from infra.services import Service, down, edge_service, platform_services, up
from infra.topics import load_specs, reconcile
from sinks.catalog import Catalog
from sinks.cdn_edge import CdnEdge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEGMENT = bytes(range(256)) * 64  # 16 KiB, every byte value: a Range shows exactly which bytes came back
MASTER = b'#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000,CODECS="avc1.64001e"\n360p/playlist.m3u8\n'
MEDIA = b'#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:4.0,\nseg_00001.m4s\n#EXT-X-ENDLIST\n'
OBJECTS = {
    "master.m3u8": MASTER,
    "360p/playlist.m3u8": MEDIA,
    "360p/init.mp4": b"\x00\x00\x00\x18ftypiso6",
    "360p/seg_00001.m4s": SEGMENT,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class EdgeRig:
    settings: Settings
    http: aiohttp.ClientSession
    catalog: Catalog
    creator: dict[str, str]  # the Authorization header of the creator who owns the videos

    @property
    def edge(self) -> str:
        return self.settings.edge_url

    @property
    def api(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    async def get(self, path: str, headers: dict[str, str] | None = None, base: str | None = None) -> tuple[Any, bytes]:
        async with self.http.get(f"{base or self.edge}{path}", headers=headers or {}) as reply:
            return reply, await reply.read()

    async def playable_video(self, privacy: str = "public") -> str:
        """A video of the creator made through the edge, with its files in storage, ready to play."""
        body = {"title": f"edge {uuid.uuid4().hex[:6]}", "privacy": privacy, "size_bytes": 1000}
        async with self.http.post(f"{self.edge}/api/v1/videos", json=body, headers=self.creator) as reply:
            assert reply.status == 201, await reply.text()
            video_id: str = (await reply.json())["video_id"]
        await self.catalog.declare_variant(video_id, "360p", "video", "H264", 640, 360, 25.0, 1)
        await self.catalog.set_status(video_id, "ready", None, datetime.now(UTC))
        await asyncio.to_thread(put_media, self.settings, video_id)
        return video_id


def put_media(settings: Settings, video_id: str) -> None:
    client = storage_client(settings.storage)
    for name, data in OBJECTS.items():
        client.put_object(settings.storage.media_bucket, f"videos/{video_id}/{name}", io.BytesIO(data), len(data))


def remove_media(settings: Settings, video_id: str) -> None:
    client = storage_client(settings.storage)
    for name in OBJECTS:
        client.remove_object(settings.storage.media_bucket, f"videos/{video_id}/{name}")


@pytest.fixture(scope="module")
def platform(live_servers: Settings) -> Iterator[tuple[Settings, list[Service]]]:
    """An API, a control worker and an edge in front of the API, on topics and ports of their own."""
    settings = dataclasses.replace(
        live_servers,
        topic_prefix=f"test-edge-{uuid.uuid4().hex[:8]}.",
        api_port=free_port(),
        edge_url=f"http://127.0.0.1:{free_port()}",
    )
    reconcile(settings)
    # Varnish reads its VCL and work directory as its own users: pytest's tmp_path is the owner's alone.
    home = Path(tempfile.mkdtemp(prefix="vidplat-edge-"))
    home.chmod(0o755)
    services = [s for s in platform_services(settings, 0, home) if s.name in ("api", "control-worker")]
    for service in services:
        service.env["METRICS_PORT"] = str(free_port())
    services.insert(1, edge_service(settings, home))
    try:
        up(services)
        yield settings, services
    finally:
        down(services)
        shutil.rmtree(home, ignore_errors=True)
        admin = admin_client(settings.kafka)
        names = [spec.name for spec in load_specs(settings)]
        for future in admin.delete_topics(names).values():
            try:
                future.result(timeout=30)
            except Exception:  # noqa: BLE001 - a topic another step never created: nothing to delete
                pass


@pytest.fixture(scope="module")
def cassandra(live_servers: Settings) -> Iterator[Session]:
    session = cassandra_session(live_servers.cassandra)
    yield session
    session.cluster.shutdown()


@pytest.fixture
async def rig(platform: tuple[Settings, list[Service]], cassandra: Session) -> AsyncIterator[EdgeRig]:
    settings, _ = platform
    async with aiohttp.ClientSession() as http:
        account = {"email": f"edge-{uuid.uuid4().hex[:8]}@example.test", "password": uuid.uuid4().hex}
        async with http.post(f"{settings.edge_url}/api/v1/auth/signup", json={**account, "role": "creator"}) as reply:
            assert reply.status == 201, await reply.text()
            token = (await reply.json())["access_token"]
        yield EdgeRig(settings, http, Catalog(cassandra), {"Authorization": f"Bearer {token}"})


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout_s:.0f} s")
        await asyncio.sleep(0.25)


SEGMENT_PATH = "/api/v1/videos/{}/360p/seg_00001.m4s"
MASTER_PATH = "/api/v1/videos/{}/playlist.m3u8"


# --- caching --------------------------------------------------------------------------------------


async def test_a_segment_is_a_miss_then_a_hit_and_ranges_come_from_the_cache(rig: EdgeRig) -> None:
    video_id = await rig.playable_video()
    path = SEGMENT_PATH.format(video_id)
    first, body = await rig.get(path)
    assert (first.status, first.headers["X-Cache"], body) == (200, "MISS", SEGMENT)
    assert first.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "X-Video-Id" not in first.headers  # the edge's own bookkeeping stays inside
    second, body = await rig.get(path)
    assert (second.status, second.headers["X-Cache"], body) == (200, "HIT", SEGMENT)

    ranged, part = await rig.get(path, {"Range": "bytes=256-511"})
    assert (ranged.status, ranged.headers["X-Cache"], part) == (206, "HIT", SEGMENT[256:512])
    assert ranged.headers["Content-Range"] == f"bytes 256-511/{len(SEGMENT)}"
    suffix, tail = await rig.get(path, {"Range": "bytes=-100"})
    assert (suffix.status, tail) == (206, SEGMENT[-100:])
    outside, _ = await rig.get(path, {"Range": f"bytes={len(SEGMENT)}-"})
    assert outside.status == 416

    # A Range on a miss: the edge fetches the whole object and answers the range from it.
    cold = SEGMENT_PATH.format(await rig.playable_video())
    ranged, part = await rig.get(cold, {"Range": "bytes=0-9"})
    assert (ranged.status, ranged.headers["X-Cache"], part) == (206, "MISS", SEGMENT[:10])
    again, part = await rig.get(cold, {"Range": "bytes=10-19"})
    assert (again.status, again.headers["X-Cache"], part) == (206, "HIT", SEGMENT[10:20])

    # CMCD query data does not split the cache (a player sends different values on every request).
    with_cmcd, body = await rig.get(f"{path}?CMCD=br%3D500%2Csid%3D%22s1%22")
    assert (with_cmcd.headers["X-Cache"], body) == ("HIT", SEGMENT)

    master, body = await rig.get(MASTER_PATH.format(video_id))
    assert (master.status, master.headers["X-Cache"], body) == (200, "MISS", MASTER)
    master, _ = await rig.get(MASTER_PATH.format(video_id))
    assert master.headers["X-Cache"] == "HIT"


async def test_only_playback_routes_are_cached(rig: EdgeRig) -> None:
    video_id = await rig.playable_video()
    for _ in range(2):
        meta, _ = await rig.get(f"/api/v1/videos/{video_id}")
        assert (meta.status, meta.headers["X-Cache"]) == (200, "MISS")
        # A request with Authorization is the caller's own: never answered from the cache.
        own, _ = await rig.get(SEGMENT_PATH.format(video_id), rig.creator)
        assert (own.status, own.headers["X-Cache"]) == (200, "MISS")
    # An error is not kept: a file missing now may be there in a moment.
    missing = f"/api/v1/videos/{video_id}/720p/seg_00001.m4s"
    for _ in range(2):
        reply, _ = await rig.get(missing)
        assert (reply.status, reply.headers["X-Cache"]) == (404, "MISS")


async def test_a_private_videos_token_urls_are_never_kept(rig: EdgeRig) -> None:
    video_id = await rig.playable_video("private")
    async with rig.http.get(f"{rig.edge}/api/v1/videos/{video_id}", headers=rig.creator) as reply:
        hls = (await reply.json())["urls"]["hls"]
    assert "/p/" in hls and hls.startswith(rig.edge)  # the API builds them for the host the player asked
    for _ in range(2):
        async with rig.http.get(hls) as reply:
            assert reply.status == 200 and reply.headers["Cache-Control"].startswith("private")
            assert reply.headers["X-Cache"] == "MISS"
    anonymous, _ = await rig.get(SEGMENT_PATH.format(video_id))
    assert anonymous.status == 404


# --- purges ---------------------------------------------------------------------------------------


async def cached(rig: EdgeRig, path: str) -> None:
    await rig.get(path)
    reply, _ = await rig.get(path)
    assert reply.headers["X-Cache"] == "HIT", path


async def test_a_deleted_videos_segment_is_purged_by_the_agent(rig: EdgeRig) -> None:
    video_id = await rig.playable_video()
    path = SEGMENT_PATH.format(video_id)
    await cached(rig, path)
    # Without a purge the edge keeps serving a cached segment for a year, whatever the origin says now:
    await asyncio.to_thread(remove_media, rig.settings, video_id)
    origin, _ = await rig.get(path, base=rig.api)
    stale, body = await rig.get(path)
    assert origin.status == 404 and (stale.status, stale.headers["X-Cache"], body) == (200, "HIT", SEGMENT)
    await asyncio.to_thread(put_media, rig.settings, video_id)

    async with rig.http.delete(f"{rig.edge}/api/v1/videos/{video_id}", headers=rig.creator) as reply:
        assert reply.status == 204, await reply.text()

    async def gone() -> bool:
        reply, _ = await rig.get(path)
        return bool(reply.status == 404)

    await eventually(gone)  # DELETED on video.lifecycle → purge_cdn_edge → BAN
    for asset in (path, MASTER_PATH.format(video_id)):
        reply, _ = await rig.get(asset)
        assert (reply.status, reply.headers["X-Cache"]) == (404, "MISS"), asset


async def test_making_a_video_private_purges_its_public_copies(rig: EdgeRig) -> None:
    video_id = await rig.playable_video("public")
    paths = [SEGMENT_PATH.format(video_id), MASTER_PATH.format(video_id)]
    for path in paths:
        await cached(rig, path)
    async with rig.http.patch(
        f"{rig.edge}/api/v1/videos/{video_id}", json={"privacy": "private"}, headers=rig.creator
    ) as reply:
        assert reply.status == 200, await reply.text()
        assert (await reply.json())["privacy"] == "private"

    async def not_served() -> bool:
        replies = [await rig.get(path) for path in paths]
        return all(reply.status == 404 for reply, _ in replies)

    await eventually(not_served)  # VideoPrivacyChanged on video.lifecycle → purge_cdn_edge → BAN
    for path in paths:
        origin, _ = await rig.get(path, base=rig.api)
        assert origin.status == 404  # what the API answers a stranger: the edge now says the same
    # The owner still plays it, from the origin each time.
    owner, body = await rig.get(paths[0], rig.creator)
    assert (owner.status, owner.headers["X-Cache"], body) == (200, "MISS", SEGMENT)

    # And back to public: served (and cached) again.
    async with rig.http.patch(
        f"{rig.edge}/api/v1/videos/{video_id}", json={"privacy": "public"}, headers=rig.creator
    ) as reply:
        assert reply.status == 200

    async def served_from_the_cache() -> bool:
        # The second purge may land after the first fetch: a HIT comes once it did.
        reply, _ = await rig.get(paths[0])
        return bool(reply.status == 200 and reply.headers["X-Cache"] == "HIT")

    await eventually(served_from_the_cache)


async def test_a_ban_from_the_purge_interface_purges_and_a_get_does_not(rig: EdgeRig) -> None:
    video_id = await rig.playable_video()
    path = SEGMENT_PATH.format(video_id)
    other = SEGMENT_PATH.format(await rig.playable_video())
    await cached(rig, path)
    await cached(rig, other)

    # A GET carrying the purge header is just a GET.
    reply, _ = await rig.get(path, {"X-Purge-Video": video_id})
    assert reply.headers["X-Cache"] == "HIT"

    edge = CdnEdge(rig.edge)
    try:
        await edge.purge_video(video_id)
    finally:
        await edge.close()
    reply, body = await rig.get(path)
    assert (reply.status, reply.headers["X-Cache"], body) == (200, "MISS", SEGMENT)
    reply, _ = await rig.get(other)
    assert reply.headers["X-Cache"] == "HIT"  # only that video's objects

    async with rig.http.request("BAN", f"{rig.edge}/", headers={"X-Purge-Video": "x/../*"}) as refused:
        assert refused.status == 400


async def test_a_ban_from_outside_the_acl_is_refused(rig: EdgeRig) -> None:
    video_id = await rig.playable_video()
    path = SEGMENT_PATH.format(video_id)
    await cached(rig, path)
    # Another loopback address as the source: not in the VCL's purgers ACL (127.0.0.1, ::1).
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as outsider:
        async with outsider.request("BAN", f"{rig.edge}/", headers={"X-Purge-Video": video_id}) as reply:
            assert reply.status == 405
        async with outsider.get(f"{rig.edge}{path}") as reply:
            assert reply.status == 200  # the same client may still play it
    reply, _ = await rig.get(path)
    assert reply.headers["X-Cache"] == "HIT"
