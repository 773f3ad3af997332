"""A deleted video is in no read model the API serves, against the real Cassandra.

Deleting a video leaves rows that still name it: its view total and place in the most-viewed list, its hourly
views (trending), co-watch maps (related, for-you), its search terms and vector, its comments and ratings, the
viewers' progress. Every list filters on the video row's status (``sinks.discovery.listed``, the ``deleted``
status is terminal) and every per-video read goes through ``viewable_video`` (404), so none of them reaches a
viewer. This module proves it: the video is in each list before the delete, and in none after.

A keyspace and topics of its own (a fresh prefix); the API is in-process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import init_app
from api.keys import catalog_key, discovery_key, engagement_store_key, qoe_store_key
from common.settings import Settings
from tests.auth_tools import sign_up
from tests.scratch import scratch_platform

pytestmark = pytest.mark.integration

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def rig(live_servers: Settings) -> AsyncIterator[Settings]:
    platform = scratch_platform(live_servers, "deleted")
    yield await asyncio.to_thread(next, platform)
    await asyncio.to_thread(next, platform, None)


@pytest.fixture
async def client(aiohttp_client: Any, rig: Settings) -> Client:
    made: Client = await aiohttp_client(await init_app(rig))
    return made


async def get(
    client: Client, path: str, status: int = 200, headers: dict[str, str] | None = None, **params: Any
) -> Any:
    async with client.get(path, params=params, headers=headers) as reply:
        body = await reply.json()
        assert reply.status == status, (path, body)
        return body


def ids(body: dict[str, Any]) -> list[str]:
    return [video["video_id"] for video in body["videos"]]


async def test_a_deleted_video_leaves_every_list_and_its_reads_are_404(client: Client) -> None:
    creator, owner = await sign_up(client, role="creator")
    viewer, watcher = await sign_up(client)
    catalog, discovery = client.app[catalog_key], client.app[discovery_key]
    word = f"zq{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)

    async def video(title: str) -> str:
        video_id = str(uuid.uuid4())
        assert await catalog.create_video(
            video_id, owner.account_id, {"title": title, "privacy": "public"}, "uploads", f"sources/{video_id}", None
        )
        await catalog.record_probe(video_id, 60.0, 1280, 720, 25.0)
        await catalog.set_status(video_id, "ready", None, datetime.now(UTC))  # after the row's own "uploading"
        return video_id

    doomed, other = await video(f"{word} doomed"), await video(f"{word} other")
    # Every read model that names the video: views, trending hour, co-watching, a viewer's recent videos,
    # comments, ratings and the viewer's progress.
    await discovery.record_views(doomed, 10**9, 0, now, 10**9)
    await discovery.record_views(other, 10**9 - 1, 0, now, 10**9 - 1)
    await discovery.set_co_watched(other, {doomed: 9})
    await discovery.set_co_watched(doomed, {other: 9})
    await discovery.set_recent(f"profile:{watcher.profile_id}", [other])
    engagement = client.app[engagement_store_key]
    comment = {
        "comment_id": str(uuid.uuid4()),
        "video_id": doomed,
        "user_id": watcher.account_id,
        "profile_id": watcher.profile_id,
        "body": "first!",
        "posted_at": now,
    }
    await engagement.post_comment(comment)
    rating = {"video_id": doomed, "user_id": watcher.account_id, "profile_id": watcher.profile_id}
    await engagement.set_rating({**rating, "value": "LIKE", "rated_at": now})
    await client.app[qoe_store_key].write_progress(watcher.viewer_id, doomed, 30.0, now)

    async def lists() -> dict[str, list[str]]:
        return {
            "newest": ids(await get(client, "/api/v1/videos", sort="newest", limit=100)),
            "most_viewed": ids(await get(client, "/api/v1/videos", sort="most_viewed", limit=100)),
            "trending": ids(await get(client, "/api/v1/recommendations/trending", limit=100)),
            "search": ids(await get(client, "/api/v1/search", q=word)),
            "creator": ids(await get(client, f"/api/v1/creators/{owner.account_id}/videos")),
            "own creator list": ids(await get(client, f"/api/v1/creators/{owner.account_id}/videos", headers=creator)),
            "related": ids(await get(client, f"/api/v1/videos/{other}/related", limit=100)),
            "for-you": ids(await get(client, "/api/v1/recommendations/for-you", headers=viewer, limit=100)),
            "history": [e["video_id"] for e in (await get(client, "/api/v1/me/history", headers=viewer))["history"]],
        }

    before = await lists()
    assert all(doomed in found for found in before.values()), before
    comments = f"/api/v1/videos/{doomed}/comments"
    assert [c["comment_id"] for c in (await get(client, comments))["comments"]] == [comment["comment_id"]]
    assert (await get(client, f"/api/v1/videos/{doomed}/engagement"))["likes"] == 1

    async with client.delete(f"/api/v1/videos/{doomed}", headers=creator) as reply:
        assert reply.status == 204, await reply.text()

    after = await lists()
    assert not [name for name, found in after.items() if doomed in found], after
    # The other video stays wherever it was (related is its own list; for-you leaves out what the viewer watched).
    assert all(other in after[name] for name in before if name not in ("related", "for-you", "history")), after
    for path in (
        comments,
        f"{comments}/{comment['comment_id']}/replies",
        f"/api/v1/videos/{doomed}/engagement",
        f"/api/v1/videos/{doomed}/related",
        f"/api/v1/videos/{doomed}",
    ):
        await get(client, path, 404, headers=viewer)
    async with client.post(comments, json={"body": "still here?"}, headers=viewer) as reply:
        assert reply.status == 404
    async with client.put(f"/api/v1/videos/{doomed}/rating", json={"value": "dislike"}, headers=viewer) as reply:
        assert reply.status == 404
