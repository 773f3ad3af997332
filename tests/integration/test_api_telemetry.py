"""The telemetry collector against the real Kafka: 202 only after the events are on the topic."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import init_app
from api.config import ApiConfig
from common.settings import KafkaSettings, Settings
from tests.auth_tools import sign_up
from tests.kafka_tools import end_offsets, events_for, with_telemetry_topic

pytestmark = pytest.mark.integration
T0 = 1_764_000_000_000


@pytest.fixture(scope="module")
def telemetry_settings(live_servers: Settings) -> Iterator[Settings]:
    yield from with_telemetry_topic(live_servers, "tel")


@pytest.fixture
async def client(aiohttp_client: Any, telemetry_settings: Settings) -> TestClient[Any, Any]:
    made: TestClient[Any, Any] = await aiohttp_client(await init_app(telemetry_settings))
    return made


def beacon(session_id: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": session_id, "video_id": "v-1", "device_class": "desktop", "events": list(events)}


async def test_a_sendbeacon_text_plain_batch_lands_on_kafka(
    client: TestClient[Any, Any], telemetry_settings: Settings
) -> None:
    topic = telemetry_settings.topic("playback.telemetry")
    session = f"s-{uuid.uuid4().hex}"
    start = end_offsets(telemetry_settings, topic)
    body = beacon(
        session,
        {"seq": 1, "type": "play_requested", "ts": T0},
        {"seq": 2, "type": "first_frame", "ts": T0 + 900, "rendition": "720p", "bitrate_kbps": 4500},
    )
    async with client.post("/api/v1/telemetry", data=json.dumps(body), headers={"Content-Type": "text/plain"}) as reply:
        assert reply.status == 202
        assert await reply.json() == {"accepted": 2, "duplicates": 0}
    events = events_for(telemetry_settings, topic, start, session, wait_for=2)
    assert [(e["seq"], e["event_type"]) for e in events] == [(1, "PLAY_REQUESTED"), (2, "FIRST_FRAME")]
    assert events[1]["rendition"] == "720p" and events[1]["bitrate_kbps"] == 4500
    assert events[0]["client_ts"].timestamp() * 1000 == T0
    assert all(e["source"] == "SDK" and e["device_class"] == "desktop" for e in events)


async def test_duplicates_are_published_once(client: TestClient[Any, Any], telemetry_settings: Settings) -> None:
    topic = telemetry_settings.topic("playback.telemetry")
    session = f"s-{uuid.uuid4().hex}"
    start = end_offsets(telemetry_settings, topic)
    body = json.dumps(beacon(session, {"seq": 7, "type": "heartbeat", "ts": T0, "playhead_s": 12.5}))
    for expected in ({"accepted": 1, "duplicates": 0}, {"accepted": 0, "duplicates": 1}):
        async with client.post("/api/v1/telemetry", data=body, headers={"Content-Type": "application/json"}) as reply:
            assert reply.status == 202 and await reply.json() == expected
    assert len(events_for(telemetry_settings, topic, start, session, wait_for=0)) == 1


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"events": [{"seq": 1, "type": "end", "ts": T0}]}, "session_id"),
        (beacon("s", {"seq": -1, "type": "end", "ts": T0}), "events[0].seq"),
        (beacon("s", {"seq": 1, "type": "explode", "ts": T0}), "events[0].type"),
        (beacon("s", {"seq": 1, "type": "end", "ts": "yesterday"}), "events[0].ts"),
        (beacon("s", {"seq": 1, "type": "end", "ts": T0, "bitrate_kbps": "fast"}), "events[0].bitrate_kbps"),
        (beacon("s", {"seq": 1, "type": "end", "ts": T0, "password": "x"}), "events[0].password"),
        ({**beacon("s", {"seq": 1, "type": "end", "ts": T0}), "device_class": "toaster"}, "device_class"),
        (beacon("s"), "events"),
    ],
)
async def test_invalid_batches_get_a_400_naming_the_field(
    client: TestClient[Any, Any], body: dict[str, Any], problem: str
) -> None:
    async with client.post("/api/v1/telemetry", json=body) as reply:
        assert reply.status == 400
        answer = await reply.json()
    assert problem in answer["detail"], answer


async def test_not_json_oversized_and_wrong_type_are_refused(client: TestClient[Any, Any]) -> None:
    async with client.post("/api/v1/telemetry", data="{not json", headers={"Content-Type": "text/plain"}) as reply:
        assert reply.status == 400
    big = json.dumps(beacon("s", *({"seq": i, "type": "heartbeat", "ts": T0} for i in range(2000))))
    assert len(big) > 64 * 1024
    async with client.post("/api/v1/telemetry", data=big, headers={"Content-Type": "text/plain"}) as reply:
        assert reply.status == 413
    async with client.post("/api/v1/telemetry", data=b"x", headers={"Content-Type": "image/png"}) as reply:
        assert reply.status == 415


async def test_a_chatty_session_is_rate_limited(client: TestClient[Any, Any]) -> None:
    session = f"s-{uuid.uuid4().hex}"
    statuses = []
    for seq in range(25):
        body = beacon(session, {"seq": seq, "type": "heartbeat", "ts": T0 + seq})
        async with client.post("/api/v1/telemetry", json=body) as reply:
            statuses.append(reply.status)
            if reply.status == 429:
                assert int(reply.headers["Retry-After"]) >= 1
    assert statuses[:20] == [202] * 20
    assert statuses[20:] == [429] * 5


async def test_kafka_down_is_a_503_and_the_beacon_can_be_retried(
    aiohttp_client: Any, telemetry_settings: Settings
) -> None:
    broken_settings = dataclasses.replace(telemetry_settings, kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    broken: TestClient[Any, Any] = await aiohttp_client(
        await init_app(broken_settings, ApiConfig(kafka_delivery_timeout_s=1))
    )
    body = beacon(f"s-{uuid.uuid4().hex}", {"seq": 1, "type": "end", "ts": T0})
    async with broken.post("/api/v1/telemetry", json=body) as reply:
        assert reply.status == 503
    # The undelivered event is not remembered as seen: a retry tries Kafka again (another 503), instead of
    # being answered 202 as a duplicate and lost.
    async with broken.post("/api/v1/telemetry", json=body) as reply:
        assert reply.status == 503


async def test_the_viewer_comes_from_the_access_token(
    client: TestClient[Any, Any], telemetry_settings: Settings
) -> None:
    topic = telemetry_settings.topic("playback.telemetry")
    session = f"s-{uuid.uuid4().hex}"
    start = end_offsets(telemetry_settings, topic)
    headers, viewer = await sign_up(client, role="viewer")
    event = {"seq": 0, "type": "heartbeat", "ts": T0, "playhead_s": 30.0}
    # Naming a viewer without a token, or another viewer than the token's: refused, nothing published.
    for body, extra in (
        ({**beacon(session, event), "user_id": viewer.account_id}, {}),
        ({**beacon(session, event), "profile_id": "someone-else"}, headers),
    ):
        async with client.post("/api/v1/telemetry", json=body, headers=extra) as reply:
            assert reply.status == 403, await reply.text()
    async with client.post("/api/v1/telemetry", json=beacon(session, event), headers=headers) as reply:
        assert reply.status == 202
    [published] = events_for(telemetry_settings, topic, start, session, wait_for=1)
    assert (published["user_id"], published["profile_id"]) == (viewer.account_id, viewer.profile_id)
