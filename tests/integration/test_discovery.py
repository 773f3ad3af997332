"""Catalogue lists, search and recommendations against the real Cassandra (SAI, vectors) and, for the view
stream, the real Kafka and a real Faust control worker.

Each test module gets a fresh keyspace (every migration applied) and fresh topics, so the lists hold only the
videos these tests create; each test names its videos with a unique word so tests do not see each other's."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cassandra.cluster import Session

from api.app import init_app
from common.avro import AvroCodec
from common.cassandra import cassandra_session
from common.kafka import durable_producer
from common.settings import Settings
from infra.services import Service, faust_worker
from sinks.catalog import Catalog
from sinks.discovery import Discovery
from tests.auth_tools import sign_up
from tests.scratch import scratch_platform

pytestmark = pytest.mark.integration
CODEC = AvroCodec()


@dataclasses.dataclass
class Rig:
    settings: Settings
    session: Session
    catalog: Catalog
    discovery: Discovery

    async def video(
        self,
        title: str,
        *,
        owner: str = "creator-a",
        description: str = "",
        tags: tuple[str, ...] = (),
        privacy: str = "public",
        status: str = "ready",
        duration_s: float = 60.0,
        created_at: datetime | None = None,
    ) -> str:
        video_id = f"v-{uuid.uuid4().hex[:12]}"
        metadata = {"title": title, "description": description, "tags": list(tags), "privacy": privacy}
        assert await self.catalog.create_video(video_id, owner, metadata, "uploads", f"{video_id}/source", None)
        await self.catalog.record_probe(video_id, duration_s, 1280, 720, 25.0)
        if status != "uploading":
            await self.catalog.set_status(video_id, status, None, datetime.now(UTC))
        if created_at is not None:
            self.session.execute("UPDATE videos SET created_at = %s WHERE video_id = %s", (created_at, video_id))
        return video_id


@pytest.fixture(scope="module")
def rig_settings(live_servers: Settings) -> Iterator[Settings]:
    yield from scratch_platform(live_servers, "disc")


@pytest.fixture(scope="module")
def rig(rig_settings: Settings) -> Iterator[Rig]:
    session = cassandra_session(rig_settings.cassandra)
    yield Rig(rig_settings, session, Catalog(session), Discovery(session))
    session.cluster.shutdown()


@pytest.fixture
async def client(aiohttp_client: Any, rig: Rig) -> AsyncIterator[TestClient[Any, Any]]:
    yield await aiohttp_client(await init_app(rig.settings))


def ids(body: dict[str, Any]) -> list[str]:
    return [video["video_id"] for video in body["videos"]]


# --- search ----------------------------------------------------------------------------------------------


async def test_search_stems_folds_and_ranks_the_exact_title_first(client: TestClient[Any, Any], rig: Rig) -> None:
    word = f"zq{uuid.uuid4().hex[:6]}"
    exact = await rig.video(f"Running {word} café")
    in_title = await rig.video(f"The {word} runs again in a café tonight", created_at=datetime.now(UTC))
    in_tags = await rig.video("Something else", tags=(word, "Cafés", "running"))
    in_description = await rig.video("Other", description=f"we ran... no: we were running with {word} at the cafe")
    await rig.video(f"{word} only, no coffee place")  # lacks one query word
    await rig.video(f"Running {word} café", privacy="private")
    await rig.video(f"Running {word} café", privacy="unlisted")
    await rig.video(f"Running {word} café", status="processing")
    await rig.video(f"Running {word} café", status="failed")

    reply = await client.get("/api/v1/search", params={"q": f"running {word.upper()} CAFE"})
    assert reply.status == 200
    body = await reply.json()
    assert ids(body) == [exact, in_title, in_tags, in_description]
    assert body["total"] == 4
    assert body["videos"][0]["title"] == f"Running {word} café"
    assert body["videos"][0]["urls"]["hls"].endswith(f"/api/v1/videos/{exact}/playlist.m3u8")

    paged = await (await client.get("/api/v1/search", params={"q": f"run {word} cafe", "limit": 2, "page": 2})).json()
    assert ids(paged) == [in_tags, in_description]


async def test_search_filters_by_duration_and_upload_date(client: TestClient[Any, Any], rig: Rig) -> None:
    word = f"zq{uuid.uuid4().hex[:6]}"
    old = datetime(2021, 3, 1, tzinfo=UTC)
    short_old = await rig.video(f"{word} short", duration_s=30, created_at=old)
    long_old = await rig.video(f"{word} long", duration_s=3600, created_at=old)
    short_new = await rig.video(f"{word} short new", duration_s=45)

    async def found(**params: Any) -> set[str]:
        reply = await client.get("/api/v1/search", params={"q": word, **params})
        assert reply.status == 200, await reply.text()
        return set(ids(await reply.json()))

    assert await found() == {short_old, long_old, short_new}
    assert await found(max_duration=60) == {short_old, short_new}
    assert await found(min_duration=60) == {long_old}
    assert await found(min_duration=40, max_duration=50) == {short_new}
    assert await found(uploaded_before="2022-01-01") == {short_old, long_old}
    assert await found(uploaded_after="2022-01-01T00:00:00Z") == {short_new}
    assert await found(uploaded_after="2021-01-01", uploaded_before="2021-06-01", max_duration=100) == {short_old}
    # An exact title match outside the filters is not let in by the exact-title lookup either.
    assert await found(q=f"{word} long", max_duration=60) == set()


async def test_search_follows_edits_and_refuses_bad_parameters(client: TestClient[Any, Any], rig: Rig) -> None:
    old_word, new_word = f"zq{uuid.uuid4().hex[:6]}", f"zq{uuid.uuid4().hex[:6]}"
    video_id = await rig.video(f"First {old_word}")
    assert ids(await (await client.get("/api/v1/search", params={"q": old_word})).json()) == [video_id]

    await rig.catalog.edit_video(video_id, {"title": f"Second {new_word}"})
    assert ids(await (await client.get("/api/v1/search", params={"q": old_word})).json()) == []
    assert ids(await (await client.get("/api/v1/search", params={"q": new_word})).json()) == [video_id]
    await rig.catalog.edit_video(video_id, {"privacy": "private"})
    assert ids(await (await client.get("/api/v1/search", params={"q": new_word})).json()) == []

    for params, field in (
        ({}, "q"),
        ({"q": "x" * 201}, "q"),
        ({"q": "a", "limit": "0"}, "limit"),
        ({"q": "a", "page": "x"}, "page"),
        ({"q": "a", "min_duration": "-1"}, "min_duration"),
        ({"q": "a", "max_duration": "nan"}, "max_duration"),
        ({"q": "a", "min_duration": "9", "max_duration": "3"}, "max_duration"),
        ({"q": "a", "uploaded_after": "yesterday"}, "uploaded_after"),
        ({"q": "a", "uploaded_after": "2024-02-01", "uploaded_before": "2024-01-01"}, "uploaded_before"),
    ):
        reply = await client.get("/api/v1/search", params=params)
        assert reply.status == 400, params
        assert field in (await reply.json())["detail"]


# --- lists -----------------------------------------------------------------------------------------------


async def test_newest_list_pages_through_public_listed_videos_newest_first(
    client: TestClient[Any, Any], rig: Rig
) -> None:
    base = datetime.now(UTC)
    word = uuid.uuid4().hex[:6]
    created = []
    for index in range(7):
        created.append(await rig.video(f"newest {word} {index}", created_at=base - timedelta(hours=index * 5)))
    hidden = {
        await rig.video(f"hidden {word}", privacy="private", created_at=base - timedelta(hours=1)),
        await rig.video(f"hidden {word}", privacy="unlisted", created_at=base - timedelta(hours=1)),
        await rig.video(f"hidden {word}", status="processing", created_at=base - timedelta(hours=2)),
    }
    playable = await rig.video(f"playable {word}", status="playable", created_at=base - timedelta(hours=31))
    mine = {*created, playable}

    # Other tests' videos interleave; this test's must come in order, each once, across pages of 3.
    seen: list[str] = []
    cursor = None
    for _ in range(30):
        params = {"sort": "newest", "limit": "3", **({"cursor": cursor} if cursor else {})}
        reply = await client.get("/api/v1/videos", params=params)
        assert reply.status == 200
        body = await reply.json()
        assert len(body["videos"]) <= 3
        seen += ids(body)
        cursor = body["next_cursor"]
        if not cursor or mine <= set(seen):
            break
    assert [video_id for video_id in seen if video_id in mine] == [*created, playable]
    assert len(set(seen)) == len(seen)
    assert not hidden & set(seen)

    reply = await client.get("/api/v1/videos", params={"sort": "newest", "cursor": "bm90LWEtY3Vyc29y"})
    assert reply.status == 400
    assert (await client.get("/api/v1/videos", params={"sort": "oldest"})).status == 400


async def test_creator_list_shows_only_listed_public_videos_newest_first(
    client: TestClient[Any, Any], rig: Rig
) -> None:
    creator = f"creator-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    older = await rig.video("older", owner=creator, created_at=now - timedelta(days=2))
    newer = await rig.video("newer", owner=creator, created_at=now - timedelta(days=1))
    await rig.video("private", owner=creator, privacy="private")
    await rig.video("unlisted", owner=creator, privacy="unlisted")
    await rig.video("processing", owner=creator, status="processing")
    await rig.video("someone else's", owner=f"other-{creator}")

    body = await (await client.get(f"/api/v1/creators/{creator}/videos")).json()
    assert ids(body) == [newer, older]
    assert body["own"] is False and body["total"] == 2
    page2 = await (await client.get(f"/api/v1/creators/{creator}/videos", params={"limit": 1, "page": 2})).json()
    assert ids(page2) == [older]


# --- views, trending, co-watching, similarity (through Kafka and a Faust worker) ------------------------------


@pytest.fixture(scope="module")
def control_worker(rig_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    home: Path = tmp_path_factory.mktemp("discovery-worker")
    env = {"TOPIC_PREFIX": rig_settings.topic_prefix, "CASSANDRA_KEYSPACE": rig_settings.cassandra.keyspace}
    worker = faust_worker("discovery-control", "control", 0, home, env)
    worker.timeout_s = 180
    worker.start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


def publish_views(settings: Settings, views: list[tuple[str, str, str | None]], at: datetime) -> None:
    """(video, session, profile) views, each sent twice (progress updates of one view count once)."""
    producer = durable_producer(settings.kafka)
    topic = settings.topic("engagement.views")
    for repeat in range(2):
        for video_id, session_id, profile_id in views:
            event = {
                "video_id": video_id,
                "session_id": session_id,
                "user_id": None,
                "profile_id": profile_id,
                "watched_s": 10.0 * (repeat + 1),
                "position_s": 10.0 * (repeat + 1),
                "viewed_at": at,
            }
            producer.produce(topic, key=video_id.encode(), value=CODEC.encode("ViewRecorded", event))
            producer.poll(0)
    assert producer.flush(60) == 0


async def eventually(check: Any, timeout_s: float = 90) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.5)


async def test_views_feed_most_viewed_trending_and_co_watching(
    client: TestClient[Any, Any], rig: Rig, control_worker: Service
) -> None:
    word = uuid.uuid4().hex[:6]
    a = await rig.video(f"alpha {word}")
    b = await rig.video(f"bravo {word}")
    c = await rig.video(f"charlie {word}")
    hidden = await rig.video(f"private {word}", privacy="private")
    lonely = await rig.video(f"lonely {word}")
    p = uuid.uuid4().hex[:6]
    # Three viewers watch a then b; one of them also c; the hidden video gets the most views of all.
    views: list[tuple[str, str, str | None]] = []
    for viewer in range(3):
        views += [(a, f"s{p}{viewer}a", f"{p}-{viewer}"), (b, f"s{p}{viewer}b", f"{p}-{viewer}")]
    views.append((c, f"s{p}0c", f"{p}-0"))
    views += [(hidden, f"s{p}h{n}", None) for n in range(5)]
    publish_views(rig.settings, views, datetime.now(UTC))

    async def co_watched() -> dict[str, int]:
        found = await rig.discovery.co_watched(a)
        return found if found.get(b) == 3 and c in found else {}

    assert await eventually(co_watched) == {b: 3, c: 1}
    assert await rig.discovery.co_watched(c) == {a: 1, b: 1}
    assert await rig.discovery.view_total(a) == 3  # each view sent twice, counted once
    assert await rig.discovery.view_total(hidden) == 5
    # Views of different videos travel on different partitions: the recent list holds them in arrival order.
    assert sorted(await rig.discovery.recent(f"profile:{p}-0")) == sorted([a, b, c])

    most = await (await client.get("/api/v1/videos", params={"sort": "most_viewed", "limit": 100})).json()
    ranked = [video_id for video_id in ids(most) if video_id in {a, b, c, hidden}]
    assert ranked[:2] == sorted([a, b], reverse=True) and ranked[2] == c  # ties: the later id first
    assert hidden not in ids(most)
    assert {v["video_id"]: v["views"] for v in most["videos"]}[a] == 3
    first = await (await client.get("/api/v1/videos", params={"sort": "most_viewed", "limit": 1})).json()
    second = await (
        await client.get("/api/v1/videos", params={"sort": "most_viewed", "limit": 1, "cursor": first["next_cursor"]})
    ).json()
    assert ids(first) + ids(second) == ids(most)[:2]

    trending = await (await client.get("/api/v1/recommendations/trending", params={"limit": 100})).json()
    order = [video_id for video_id in ids(trending) if video_id in {a, b, c, hidden}]
    assert set(order[:2]) == {a, b} and order[2] == c and hidden not in order

    related = await (await client.get(f"/api/v1/videos/{a}/related", params={"limit": 5})).json()
    assert ids(related)[:2] == [b, c]
    assert [v["source"] for v in related["videos"][:2]] == ["co_watch", "co_watch"]
    assert all(v["source"] == "content" for v in related["videos"][2:])
    assert hidden not in ids(related) and a not in ids(related)

    # A video nobody co-watched: content similarity over the stored vectors (SAI ANN) stands in.
    lonely_related = await (await client.get(f"/api/v1/videos/{lonely}/related", params={"limit": 3})).json()
    assert lonely_related["videos"] and {v["source"] for v in lonely_related["videos"]} == {"content"}
    assert lonely not in ids(lonely_related)
    assert (await client.get("/api/v1/videos/no-such-video/related")).status == 404

    for_you = await (await client.get("/api/v1/recommendations/for-you", params={"limit": 3})).json()
    assert for_you["signed_in"] is False and for_you["videos"]
    assert {v["source"] for v in for_you["videos"]} == {"trending"}


async def test_related_by_text_puts_the_closest_text_first(client: TestClient[Any, Any], rig: Rig) -> None:
    word = f"zq{uuid.uuid4().hex[:6]}"
    seed = await rig.video(f"{word} sourdough bread baking", tags=("baking", "bread"), description="crust and crumb")
    close = await rig.video(f"{word} baking sourdough bread at home", tags=("bread",), description="crumb")
    await rig.video("Formula one qualifying lap", tags=("racing",), description="tyres and pit stops")
    found = await rig.discovery.similar(await rig.discovery.embedding(seed) or [], 3)
    assert [row.video_id for row in found][:2] == [seed, close]
    related = await (await client.get(f"/api/v1/videos/{seed}/related", params={"limit": 1})).json()
    assert ids(related) == [close]


# --- the signed-in caller: their own list, "for you" ----------------------------------------------------


async def test_a_creator_signed_in_sees_their_own_unlisted_and_private_videos(
    client: TestClient[Any, Any], rig: Rig
) -> None:
    headers, principal = await sign_up(client, role="creator")
    mine = principal.account_id
    public = await rig.video("public", owner=mine, created_at=datetime.now(UTC) - timedelta(minutes=3))
    unlisted = await rig.video(
        "unlisted", owner=mine, privacy="unlisted", created_at=datetime.now(UTC) - timedelta(minutes=2)
    )
    private = await rig.video(
        "private", owner=mine, privacy="private", created_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    await rig.video("still processing", owner=mine, privacy="private", status="processing")

    own = await (await client.get(f"/api/v1/creators/{mine}/videos", headers=headers)).json()
    assert own["own"] is True and ids(own) == [private, unlisted, public]
    stranger_headers, _ = await sign_up(client, role="viewer")
    for caller in (stranger_headers, {}):
        seen = await (await client.get(f"/api/v1/creators/{mine}/videos", headers=caller)).json()
        assert seen["own"] is False and ids(seen) == [public]
    bad = await client.get(f"/api/v1/creators/{mine}/videos", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status == 401


async def test_for_you_follows_the_viewers_recent_videos(client: TestClient[Any, Any], rig: Rig) -> None:
    headers, principal = await sign_up(client, role="viewer")
    key = f"profile:{principal.profile_id}" if principal.profile_id else f"user:{principal.account_id}"
    word = uuid.uuid4().hex[:6]
    watched, also, later, other = [await rig.video(f"{name} {word}") for name in ("watched", "also", "later", "other")]
    hidden = await rig.video(f"hidden {word}", privacy="private")
    await rig.discovery.set_recent(key, [later, watched])
    await rig.discovery.set_co_watched(watched, {also: 5, hidden: 9, later: 7, other: 1})
    await rig.discovery.set_co_watched(later, {other: 4})

    body = await (await client.get("/api/v1/recommendations/for-you", params={"limit": 2}, headers=headers)).json()
    assert body["signed_in"] is True
    # other: 4 from the latest video + 1/2 from the one before; also: 5/2. Never what was watched, never private.
    assert ids(body) == [other, also]
    assert [v["source"] for v in body["videos"]] == ["co_watch", "co_watch"]
    more = await (await client.get("/api/v1/recommendations/for-you", params={"limit": 6}, headers=headers)).json()
    assert {watched, later, hidden}.isdisjoint(ids(more)) and ids(more)[:2] == [other, also]
    assert {v["source"] for v in more["videos"][2:]} <= {"content", "trending"}
