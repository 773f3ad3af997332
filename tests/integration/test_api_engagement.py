"""Comments, ratings, watch progress and history through the API, the real Kafka, a real Faust control worker
and Cassandra (fresh topics and keyspace for this module): a write is a 202 once on Kafka, and what the worker
applies is what the reads return."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import init_app
from api.config import ApiConfig
from api.keys import catalog_key, qoe_store_key
from common.settings import Settings
from infra.services import Service, faust_worker
from tests.auth_tools import PASSWORD, profile_headers, sign_up, sign_up_tokens
from tests.scratch import scratch_platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Client = TestClient[Any, Any]


@pytest.fixture(scope="module")
async def rig(live_servers: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Settings]:
    """Topics and a keyspace of this module, and a control worker applying engagement events to them."""
    platform = scratch_platform(live_servers, "api-engagement")
    settings = await asyncio.to_thread(next, platform)
    home: Path = tmp_path_factory.mktemp("engagement-worker")
    env = {"TOPIC_PREFIX": settings.topic_prefix, "CASSANDRA_KEYSPACE": settings.cassandra.keyspace}
    worker: Service = faust_worker("api-engagement-worker", "control", 0, home, env)
    await asyncio.to_thread(worker.start)
    try:
        await asyncio.to_thread(worker.wait_ready)
        yield settings
    finally:
        await asyncio.to_thread(worker.stop)
        await asyncio.to_thread(next, platform, None)


@pytest.fixture
async def client(aiohttp_client: Any, rig: Settings) -> Client:
    made: Client = await aiohttp_client(await init_app(rig))
    return made


async def new_video(client: Client, owner_id: str, *, privacy: str = "public", duration_s: float = 600.0) -> str:
    video_id = f"v-{uuid.uuid4().hex[:12]}"
    catalog = client.app[catalog_key]
    meta = {"title": f"Title {video_id}", "privacy": privacy}
    assert await catalog.create_video(video_id, owner_id, meta, "uploads", f"sources/{video_id}", "a.mp4")
    await catalog.record_probe(video_id, duration_s, 1280, 720, 25.0)
    return video_id


async def call(
    client: Client, method: str, path: str, status: int, headers: dict[str, str] | None = None, **kwargs: Any
) -> Any:
    async with client.request(method, path, headers=headers, **kwargs) as response:
        body = await response.json()
        assert response.status == status, (method, path, body)
        return body


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 60) -> Any:
    """Poll ``check`` until it returns something truthy: the worker applies events a moment after the 202."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s:.0f} s; last result {result!r}")
        await asyncio.sleep(0.5)


async def comment_ids(client: Client, video: str, headers: dict[str, str] | None = None, **query: Any) -> list[str]:
    body = await call(client, "GET", f"/api/v1/videos/{video}/comments", 200, headers, params=query)
    return [c["comment_id"] for c in body["comments"]]


# --- comments ---------------------------------------------------------------------------------------------


async def test_comments_replies_pages_and_removal(client: Client) -> None:
    alice, a = await sign_up(client, role="creator")
    bob, _b = await sign_up(client)
    admin, _ = await sign_up(client, role="admin")
    video = await new_video(client, a.account_id)
    base = f"/api/v1/videos/{video}/comments"

    posted = []
    for n in range(5):
        body = await call(client, "POST", base, 202, alice, json={"body": f"  comment {n}  "})
        posted.append(body["comment_id"])
        await eventually(functools.partial(_listed, client, video, body["comment_id"]))
    first, second = posted[0], posted[1]
    # Bob replies twice to the first comment and once to the second; a reply to a reply joins the thread.
    r1 = (await call(client, "POST", f"{base}/{first}/replies", 202, bob, json={"body": "reply one"}))["comment_id"]
    await eventually(lambda: _reply_listed(client, video, first, r1))
    nested = await call(client, "POST", f"{base}/{r1}/replies", 202, bob, json={"body": "reply to a reply"})
    assert nested["parent_id"] == first
    r3 = (await call(client, "POST", f"{base}/{second}/replies", 202, alice, json={"body": "self reply"}))["comment_id"]
    await eventually(lambda: _reply_listed(client, video, second, r3))
    await eventually(lambda: _reply_listed(client, video, first, nested["comment_id"]))

    assert await comment_ids(client, video) == posted[::-1]  # newest first, for anyone (signed in or not)
    # "top": most replies first, then newest; two pages of two and one of one, through the cursor.
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {"sort": "top", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = await call(client, "GET", base, 200, bob, params=query)
        pages.append([c["comment_id"] for c in body["comments"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [cid for page in pages for cid in page] == [first, second, *posted[:1:-1]]
    assert [len(p) for p in pages[:2]] == [2, 2]
    top = (await call(client, "GET", base, 200, bob, params={"sort": "top", "limit": "2"}))["comments"]
    assert [(c["reply_count"], c["body"], c["mine"]) for c in top] == [(2, "comment 0", False), (1, "comment 1", False)]
    thread = await call(client, "GET", f"{base}/{first}/replies", 200)
    assert [(r["comment_id"], r["parent_id"], r["body"]) for r in thread["replies"]] == [
        (r1, first, "reply one"),
        (nested["comment_id"], first, "reply to a reply"),
    ]
    page = await call(client, "GET", f"{base}/{first}/replies", 200, params={"limit": "1"})
    rest = await call(
        client, "GET", f"{base}/{first}/replies", 200, params={"limit": "1", "cursor": page["next_cursor"]}
    )
    assert [r["comment_id"] for r in page["replies"] + rest["replies"]] == [r1, nested["comment_id"]]
    totals = await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200)
    assert totals["comments"] == 5 + 3

    # Only the author (or an admin) removes a comment.
    await call(client, "DELETE", f"{base}/{first}", 403, bob)
    await call(client, "DELETE", f"{base}/{first}", 401)
    await call(client, "DELETE", f"{base}/{first}", 202, alice)  # takes its two replies with it
    await call(client, "DELETE", f"{base}/{r3}", 202, admin)
    await eventually(lambda: _total_comments(client, video, 4))
    assert await comment_ids(client, video) == posted[:0:-1]
    await call(client, "GET", f"{base}/{first}/replies", 404)
    # The removed thread takes no more replies, not even through one of its replies.
    await call(client, "POST", f"{base}/{first}/replies", 404, bob, json={"body": "late"})
    await call(client, "POST", f"{base}/{r1}/replies", 404, bob, json={"body": "late"})
    await call(client, "DELETE", f"{base}/{first}", 404, alice)  # already gone


async def _listed(client: Client, video: str, comment_id: str) -> bool:
    return comment_id in await comment_ids(client, video)


async def _reply_listed(client: Client, video: str, parent: str, reply: str) -> bool:
    async with client.get(f"/api/v1/videos/{video}/comments/{parent}/replies") as response:
        return response.status == 200 and reply in [r["comment_id"] for r in (await response.json())["replies"]]


async def _total_comments(client: Client, video: str, expected: int) -> bool:
    body = await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200)
    return bool(body["comments"] == expected)


async def test_a_retried_post_with_the_same_idempotency_key_is_one_comment(client: Client) -> None:
    headers, principal = await sign_up(client)
    video = await new_video(client, principal.account_id)
    retry = {**headers, "Idempotency-Key": "post-1"}
    first = await call(client, "POST", f"/api/v1/videos/{video}/comments", 202, retry, json={"body": "once"})
    again = await call(client, "POST", f"/api/v1/videos/{video}/comments", 202, retry, json={"body": "once"})
    assert first["comment_id"] == again["comment_id"]
    await eventually(lambda: _total_comments(client, video, 1))
    other = await call(client, "POST", f"/api/v1/videos/{video}/comments", 202, headers, json={"body": "twice"})
    await eventually(lambda: _total_comments(client, video, 2))
    assert await comment_ids(client, video) == [other["comment_id"], first["comment_id"]]


async def test_comment_requests_are_checked(client: Client) -> None:
    headers, principal = await sign_up(client)
    video = await new_video(client, principal.account_id)
    base = f"/api/v1/videos/{video}/comments"
    await call(client, "POST", base, 401, json={"body": "anonymous"})
    for body, field in (
        ({"body": "   "}, "body"),
        ({"body": "x" * 5001}, "body"),
        ({"body": "ok", "author_id": "someone-else"}, "author_id"),
        ({"body": "bell\x07"}, "body"),
        ({}, "body"),
    ):
        detail = (await call(client, "POST", base, 400, headers, json=body))["detail"]
        assert field in detail, body
    await call(client, "POST", base, 400, headers, data=b"not json")
    await call(client, "POST", "/api/v1/videos/no-such-video/comments", 404, headers, json={"body": "hi"})
    await call(client, "POST", f"{base}/{uuid.uuid4()}/replies", 404, headers, json={"body": "to nothing"})
    await call(client, "GET", base, 400, params={"sort": "best"})
    await call(client, "GET", base, 400, params={"limit": "0"})
    await call(client, "GET", base, 400, params={"limit": "101"})
    await call(client, "GET", base, 400, params={"cursor": "!!!"})
    # A cursor of another list (here: another sort) is refused, not misread.
    other = f"/api/v1/videos/{await new_video(client, principal.account_id)}/comments"
    for n in range(3):
        await call(client, "POST", other, 202, headers, json={"body": f"c{n}"})
    await eventually(lambda: _total_comments(client, other.split("/")[4], 3))
    cursor = (await call(client, "GET", other, 200, params={"limit": "1"}))["next_cursor"]
    assert cursor
    await call(client, "GET", other, 400, params={"sort": "top", "cursor": cursor})
    await call(client, "GET", base, 400, params={"cursor": cursor})
    # A forged cursor of the right list is refused before Cassandra sees it (its signature does not match).
    video_id = other.split("/")[4]
    signature = cursor.partition(".")[2]
    for state in (b"\x01\x02garbage", bytes(64), b"\xff" * 7):
        forged = base64.urlsafe_b64encode(f"newest/{video_id}:".encode() + state).decode()
        await call(client, "GET", other, 400, params={"cursor": forged})
        await call(client, "GET", other, 400, params={"cursor": f"{forged}.{signature}"})
    # The genuine cursor still works after all that: the API's Cassandra connections are intact.
    assert len((await call(client, "GET", other, 200, params={"limit": "1", "cursor": cursor}))["comments"]) == 1


async def test_writes_are_503_when_kafka_does_not_acknowledge(aiohttp_client: Any, rig: Settings) -> None:
    broken = dataclasses.replace(rig, kafka=dataclasses.replace(rig.kafka, bootstrap_servers="127.0.0.1:1"))
    client: Client = await aiohttp_client(await init_app(broken, ApiConfig(kafka_delivery_timeout_s=2)))
    headers, principal = await sign_up(client)
    video = await new_video(client, principal.account_id)
    await call(client, "POST", f"/api/v1/videos/{video}/comments", 503, headers, json={"body": "lost?"})
    await call(client, "PUT", f"/api/v1/videos/{video}/rating", 503, headers, json={"value": "like"})
    body = {"position_s": 3.0, "session_id": "s1"}
    await call(client, "PUT", f"/api/v1/me/progress/{video}", 503, headers, json=body)


# --- ratings ----------------------------------------------------------------------------------------------


async def _totals_are(client: Client, video: str, likes: int, dislikes: int) -> bool:
    body = await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200)
    return bool((body["likes"], body["dislikes"]) == (likes, dislikes))


async def test_ratings_are_changeable_removable_and_per_profile(client: Client) -> None:
    viewers = [await sign_up(client) for _ in range(4)]
    owner = viewers[0][1]
    video = await new_video(client, owner.account_id)
    rating = f"/api/v1/videos/{video}/rating"
    for headers, _ in viewers:
        await call(client, "PUT", rating, 202, headers, json={"value": "like"})
    await eventually(lambda: _totals_are(client, video, 4, 0))
    await call(client, "PUT", rating, 202, viewers[1][0], json={"value": "dislike"})  # changed
    await call(client, "DELETE", rating, 202, viewers[2][0])  # removed
    await call(client, "PUT", rating, 202, viewers[3][0], json={"value": "like"})  # the same again
    await eventually(lambda: _totals_are(client, video, 2, 1))
    # A second profile of the same account rates on its own.
    second, _ = await profile_headers(client, viewers[0][0])
    await call(client, "PUT", rating, 202, second, json={"value": "dislike"})
    await eventually(lambda: _totals_are(client, video, 2, 2))
    mine = await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200, viewers[1][0])
    assert mine["my_rating"] == "dislike"
    assert (await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200, viewers[2][0]))["my_rating"] is None
    assert (await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200, viewers[0][0]))["my_rating"] == "like"
    assert "my_rating" not in await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200)

    await call(client, "PUT", rating, 401, json={"value": "like"})
    await call(client, "PUT", rating, 400, viewers[0][0], json={"value": "love"})
    await call(client, "PUT", rating, 400, viewers[0][0], json={"value": "like", "user_id": "x"})
    await call(client, "PUT", "/api/v1/videos/no-such-video/rating", 404, viewers[0][0], json={"value": "like"})


async def test_a_private_video_s_engagement_is_hidden_from_others(client: Client) -> None:
    owner_headers, owner = await sign_up(client, role="creator")
    other, _ = await sign_up(client)
    admin, _ = await sign_up(client, role="admin")
    video = await new_video(client, owner.account_id, privacy="private")
    base = f"/api/v1/videos/{video}"
    await call(client, "POST", f"{base}/comments", 202, owner_headers, json={"body": "note to self"})
    await eventually(lambda: _owner_total(client, video, owner_headers))
    for method, path, body in (
        ("GET", f"{base}/comments", None),
        ("GET", f"{base}/engagement", None),
        ("POST", f"{base}/comments", {"body": "hi"}),
        ("PUT", f"{base}/rating", {"value": "like"}),
        ("PUT", f"/api/v1/me/progress/{video}", {"position_s": 1.0, "session_id": "s"}),
    ):
        await call(client, method, path, 404, other, json=body)
        if method == "GET":
            await call(client, method, path, 404)
    assert len((await call(client, "GET", f"{base}/comments", 200, admin))["comments"]) == 1


async def _owner_total(client: Client, video: str, headers: dict[str, str]) -> bool:
    body = await call(client, "GET", f"/api/v1/videos/{video}/engagement", 200, headers)
    return bool(body["comments"] == 1)


# --- watch progress and history ---------------------------------------------------------------------------


async def _position(client: Client, headers: dict[str, str], video: str, expected: float) -> bool:
    body = await call(client, "GET", f"/api/v1/me/progress/{video}", 200, headers)
    return bool(body["position_s"] == expected)


async def test_the_resume_position_follows_the_profile_to_another_device(client: Client) -> None:
    tokens = await sign_up_tokens(client)
    phone = {"Authorization": f"Bearer {tokens['access_token']}"}
    video = await new_video(client, tokens["account_id"], duration_s=1200.0)
    # The same profile signs in on a TV: another login, another token.
    async with client.post("/api/v1/auth/login", json={"email": tokens["email"], "password": PASSWORD}) as r:
        assert r.status == 200
        tv = {"Authorization": f"Bearer {(await r.json())['access_token']}"}
    progress = f"/api/v1/me/progress/{video}"
    assert (await call(client, "GET", progress, 200, tv))["position_s"] == 0.0
    await call(
        client, "PUT", progress, 202, phone, json={"position_s": 312.5, "session_id": "phone-1", "watched_s": 300}
    )
    await eventually(lambda: _position(client, tv, video, 312.5))
    await call(client, "PUT", progress, 202, tv, json={"position_s": 640.0, "session_id": "tv-1"})
    await eventually(lambda: _position(client, phone, video, 640.0))
    resume = await call(client, "GET", progress, 200, phone)
    assert (resume["duration_s"], resume["finished"]) == (1200.0, False)
    # Another profile of the account has its own position.
    kid, _ = await profile_headers(client, phone, "Kid")
    assert (await call(client, "GET", progress, 200, kid))["position_s"] == 0.0

    for body, field in (
        ({"position_s": -1, "session_id": "s"}, "position_s"),
        ({"position_s": 5000, "session_id": "s"}, "position_s"),
        ({"position_s": 1}, "session_id"),
        ({"position_s": True, "session_id": "s"}, "position_s"),
        ({"position_s": 1, "session_id": "s", "viewer_id": "someone"}, "viewer_id"),
    ):
        assert field in (await call(client, "PUT", progress, 400, phone, json=body))["detail"], body
    await call(client, "PUT", progress, 401, json={"position_s": 1, "session_id": "s"})
    await call(client, "GET", "/api/v1/me/history", 401)


async def test_history_and_continue_watching(client: Client) -> None:
    headers, principal = await sign_up(client)
    videos = [await new_video(client, principal.account_id, duration_s=100.0) for _ in range(4)]
    # Watched in this order: v0 half, v1 to the end, v2 a little, v3 half, then v0 again.
    for video, position in ((videos[0], 50.0), (videos[1], 99.0), (videos[2], 10.0), (videos[3], 40.0)):
        await call(
            client,
            "PUT",
            f"/api/v1/me/progress/{video}",
            202,
            headers,
            json={"position_s": position, "session_id": "s"},
        )
        await eventually(functools.partial(_position, client, headers, video, position))
    # A player heartbeat (what the QoE agent writes) moves v0 to the front of the history too.
    await client.app[qoe_store_key].write_progress(principal.viewer_id, videos[0], 55.0, datetime.now(UTC))
    expected = [videos[0], videos[3], videos[2], videos[1]]

    history = await call(client, "GET", "/api/v1/me/history", 200, headers)
    assert [e["video_id"] for e in history["history"]] == expected
    assert history["next_cursor"] is None
    assert [e["finished"] for e in history["history"]] == [False, False, False, True]
    assert history["history"][0]["position_s"] == 55.0 and history["history"][0]["title"] == f"Title {videos[0]}"
    page1 = await call(client, "GET", "/api/v1/me/history", 200, headers, params={"limit": "3"})
    page2 = await call(
        client, "GET", "/api/v1/me/history", 200, headers, params={"limit": "3", "cursor": page1["next_cursor"]}
    )
    assert [e["video_id"] for e in page1["history"] + page2["history"]] == expected
    assert page2["next_cursor"] is None
    await call(client, "GET", "/api/v1/me/history", 400, headers, params={"cursor": "nonsense"})

    cont = await call(client, "GET", "/api/v1/me/continue-watching", 200, headers)
    assert [e["video_id"] for e in cont["continue_watching"]] == [videos[0], videos[3], videos[2]]
    assert [
        e["video_id"]
        for e in (await call(client, "GET", "/api/v1/me/continue-watching", 200, headers, params={"limit": "1"}))[
            "continue_watching"
        ]
    ] == [videos[0]]
    # An older report from another device, arriving late, does not move anything back.
    await client.app[qoe_store_key].write_progress(
        principal.viewer_id, videos[0], 5.0, datetime.now(UTC) - timedelta(hours=1)
    )
    assert (await call(client, "GET", f"/api/v1/me/progress/{videos[0]}", 200, headers))["position_s"] == 55.0
    # A deleted video leaves the lists.
    await client.app[catalog_key].set_status(videos[3], "deleted", None, datetime.now(UTC))
    cont = await call(client, "GET", "/api/v1/me/continue-watching", 200, headers)
    assert [e["video_id"] for e in cont["continue_watching"]] == [videos[0], videos[2]]
    # Another account sees none of it.
    stranger, _ = await sign_up(client)
    assert (await call(client, "GET", "/api/v1/me/history", 200, stranger))["history"] == []
