"""CMCD collection against the real Kafka (and the real S3 and Cassandra for harvested playback requests):
v2 event-mode reports at `POST /api/v1/cmcd`, v1 data from a playback request's query or headers."""

from __future__ import annotations

import asyncio
import io
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.app import init_app
from api.cmcd import device_class_of
from api.keys import catalog_key, collector_key
from common.qoe import views
from common.settings import Settings
from common.storage import storage_client
from tests.kafka_tools import end_offsets, events_for, with_telemetry_topic

pytestmark = pytest.mark.integration
T0 = 1_764_000_000_000
SEGMENT = bytes(i % 253 for i in range(50_000))
CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


@pytest.fixture(scope="module")
def cmcd_settings(live_servers: Settings) -> Iterator[Settings]:
    yield from with_telemetry_topic(live_servers, "cmcd")


@pytest.fixture
async def client(aiohttp_client: Any, cmcd_settings: Settings) -> TestClient[Any, Any]:
    made: TestClient[Any, Any] = await aiohttp_client(await init_app(cmcd_settings))
    return made


def topic_of(settings: Settings) -> str:
    return settings.topic("playback.telemetry")


async def post_reports(client: TestClient[Any, Any], body: str, content_type: str = "application/cmcd") -> Any:
    async with client.post("/api/v1/cmcd", data=body, headers={"Content-Type": content_type}) as reply:
        return reply.status, await reply.json()


async def test_v2_event_reports_become_playback_events(client: TestClient[Any, Any], cmcd_settings: Settings) -> None:
    sid = f"s-{uuid.uuid4().hex}"
    start = end_offsets(cmcd_settings, topic_of(cmcd_settings))
    body = "\n".join(
        [
            f'e=ps,sta=s,sid="{sid}",cid="video-9",sn=0,ts={T0},v=2',
            f'e=ps,sta=p,sid="{sid}",cid="video-9",sn=1,ts={T0 + 1200},br=(3200;v 128;a),v=2',
            f'e=t,sid="{sid}",cid="video-9",sn=2,ts={T0 + 11200},pt=10000,pb=(3200;v),v=2',
            f'e=ps,sta=r,sid="{sid}",sn=3,ts={T0 + 12000},v=2',
        ]
    )
    status, reply = await post_reports(client, body, "text/plain")
    assert (status, reply) == (202, {"accepted": 4, "duplicates": 0})
    events = events_for(cmcd_settings, topic_of(cmcd_settings), start, sid, wait_for=4)
    assert [(e["seq"], e["event_type"], e["source"]) for e in events] == [
        (0, "PLAY_REQUESTED", "CMCD_V2"),
        (1, "FIRST_FRAME", "CMCD_V2"),
        (2, "HEARTBEAT", "CMCD_V2"),
        (3, "STALL_START", "CMCD_V2"),
    ]
    assert events[1]["client_ts"].timestamp() * 1000 == T0 + 1200
    assert events[0]["video_id"] == "video-9" and events[1]["bitrate_kbps"] == 3200
    assert events[2]["playhead_s"] == 10.0 and events[2]["bitrate_kbps"] == 3200

    # The same reports again: nothing new on Kafka. The next batch still knows the player was rebuffering.
    assert await post_reports(client, body) == (202, {"accepted": 0, "duplicates": 4})
    status, reply = await post_reports(client, f'e=ps,sta=p,sid="{sid}",sn=4,ts={T0 + 12500},v=2')
    assert (status, reply["accepted"]) == (202, 1)
    events = events_for(cmcd_settings, topic_of(cmcd_settings), start, sid, wait_for=5)
    assert [(e["seq"], e["event_type"]) for e in events][4:] == [(4, "STALL_END")]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "detail_has"),
    [
        ("e=ps,sta=s,sn=0", "application/cmcd", 400, "needs sid"),
        ('e=ps,sta=s,sid="x"', "application/cmcd", 400, "needs sn"),
        ('sta=s,sid="x",sn=0', "application/cmcd", 400, "needs e"),
        ('e=ps,sid="x",sn=0,br="fast"', "application/cmcd", 400, "br"),
        ("e=ps,,,sta", "application/cmcd", 400, "RFC 8941"),
        ('e=ps,sta=s,sid="x",sn=0', "application/json", 415, ""),
        ("", "application/cmcd", 400, "no CMCD report"),
    ],
)
async def test_malformed_reports_are_refused_with_a_reason(
    client: TestClient[Any, Any], body: str, content_type: str, status: int, detail_has: str
) -> None:
    got_status, reply = await post_reports(client, body, content_type)
    assert got_status == status
    assert detail_has in str(reply)


async def test_a_report_in_the_query_string_is_accepted(client: TestClient[Any, Any], cmcd_settings: Settings) -> None:
    sid = f"s-{uuid.uuid4().hex}"
    start = end_offsets(cmcd_settings, topic_of(cmcd_settings))
    query = urllib.parse.urlencode({"CMCD": f'e=e,sta=f,ec=("MEDIA_ERR_DECODE"),sid="{sid}",sn=0,ts={T0}'})
    async with client.post(f"/api/v1/cmcd?{query}") as reply:
        assert reply.status == 202
    [event] = events_for(cmcd_settings, topic_of(cmcd_settings), start, sid, wait_for=1)
    assert (event["event_type"], event["fatal"], event["error_code"]) == ("ERROR", True, "MEDIA_ERR_DECODE")


async def published(client: TestClient[Any, Any], count: int = 1) -> None:
    """Let the harvest finish before reading Kafka (events_for blocks the event loop): the handler of a
    streamed response returns a moment after the client has the body, then its publish runs in the background."""
    collector = client.app[collector_key]
    for _ in range(200):
        if collector.harvested >= count:
            break
        await asyncio.sleep(0.01)
    if collector.pending:
        await asyncio.wait(list(collector.pending), timeout=20)


@pytest.fixture
async def segment_video(client: TestClient[Any, Any], cmcd_settings: Settings) -> str:
    video_id = str(uuid.uuid4())
    catalog = client.app[catalog_key]
    assert await catalog.create_video(
        video_id, "tester", {"title": "cmcd test", "privacy": "public"}, "uploads", "sources/x", None
    )
    await catalog.set_status(video_id, "playable", None, datetime.now(UTC))
    media = storage_client(cmcd_settings.storage)
    key = f"videos/{video_id}/360p/seg_00001.m4s"
    await asyncio.to_thread(
        media.put_object, cmcd_settings.storage.media_bucket, key, io.BytesIO(SEGMENT), len(SEGMENT)
    )
    return video_id


async def test_v1_query_data_on_a_segment_request_is_harvested(
    client: TestClient[Any, Any], cmcd_settings: Settings, segment_video: str
) -> None:
    sid = f"s-{uuid.uuid4().hex}"
    start = end_offsets(cmcd_settings, topic_of(cmcd_settings))
    cmcd = f'bl=21300,br=800,cid="{segment_video}",d=4000,mtp=25400,ot=v,sf=h,sid="{sid}",st=v,su,tb=6000'
    path = f"/api/v1/videos/{segment_video}/360p/seg_00001.m4s"
    url = f"{path}?{urllib.parse.urlencode({'CMCD': cmcd})}"
    async with client.get(url, headers={"User-Agent": CHROME_LINUX, "Range": "bytes=0-9999"}) as reply:
        assert reply.status == 206
        assert len(await reply.read()) == 10_000
    await published(client)
    [event] = events_for(cmcd_settings, topic_of(cmcd_settings), start, sid, wait_for=1)
    assert (event["event_type"], event["source"], event["bitrate_kbps"], event["bytes"]) == (
        "CMCD_REQUEST",
        "CMCD_V1",
        800,
        10_000,
    )
    assert (event["video_id"], event["rendition"], event["device_class"]) == (segment_video, "360p", "desktop")
    assert event["extras"]["bl"] == "21300" and event["extras"]["su"] == "true" and event["extras"]["ot"] == "v"


async def test_v1_headers_are_harvested_and_bad_cmcd_never_breaks_playback(
    client: TestClient[Any, Any], cmcd_settings: Settings, segment_video: str
) -> None:
    sid = f"s-{uuid.uuid4().hex}"
    start = end_offsets(cmcd_settings, topic_of(cmcd_settings))
    path = f"/api/v1/videos/{segment_video}/360p/seg_00001.m4s"
    headers = {
        "CMCD-Object": "br=1500,d=4000,ot=v",
        "CMCD-Request": "bl=8000,mtp=9000",
        "CMCD-Session": f'cid="{segment_video}",sid="{sid}",sf=h',
        "CMCD-Status": "bs",
    }
    async with client.get(path, headers=headers) as reply:
        assert reply.status == 200 and len(await reply.read()) == len(SEGMENT)
    # Malformed CMCD and CMCD without a session id: the segment is still served, nothing is published.
    for bad in ({"CMCD": 'br="fast",sid="x"'}, {"CMCD": "br=800"}):
        async with client.get(f"{path}?{urllib.parse.urlencode(bad)}") as reply:
            assert reply.status == 200 and len(await reply.read()) == len(SEGMENT)
    await published(client)
    [event] = events_for(cmcd_settings, topic_of(cmcd_settings), start, sid, wait_for=1)
    assert (event["bitrate_kbps"], event["bytes"], event["extras"]["bs"]) == (1500, len(SEGMENT), "true")
    assert event["device_class"] == "other"  # the test client's own User-Agent
    assert events_for(cmcd_settings, topic_of(cmcd_settings), start, "x", wait_for=0) == []


async def test_v1_bytes_belong_to_the_served_video_whatever_cid_the_player_sends(
    client: TestClient[Any, Any], cmcd_settings: Settings, segment_video: str
) -> None:
    """dash.js and Shaka configured with ``cid: "holdout"`` play a platform video (query mode and header
    mode): every request's event, and so its bytes, is the served video's; "holdout" is kept in extras as the
    integrator's content id, and no event or byte lands on a video called "holdout"."""
    sid = f"s-{uuid.uuid4().hex}"
    start = end_offsets(cmcd_settings, topic_of(cmcd_settings))
    path = f"/api/v1/videos/{segment_video}/360p/seg_00001.m4s"
    query = urllib.parse.urlencode({"CMCD": f'br=800,cid="holdout",d=4000,ot=v,sf=d,sid="{sid}",st=v'})
    async with client.get(f"{path}?{query}", headers={"User-Agent": CHROME_LINUX}) as reply:
        assert reply.status == 200 and len(await reply.read()) == len(SEGMENT)
    headers = {"CMCD-Object": "br=800,d=4000,ot=v", "CMCD-Session": f'cid="holdout",sf=d,sid="{sid}",st=v'}
    async with client.get(path, headers=headers) as reply:
        assert reply.status == 200 and len(await reply.read()) == len(SEGMENT)
    await published(client, 2)
    events = events_for(cmcd_settings, topic_of(cmcd_settings), start, sid, wait_for=2)
    assert [(e["event_type"], e["video_id"], e["rendition"], e["bytes"], e["extras"]["cid"]) for e in events] == [
        ("CMCD_REQUEST", segment_video, "360p", len(SEGMENT), "holdout")
    ] * 2

    # What the QoE agent books for them: the served video's bytes, nothing on "holdout".
    session = views.new_session(sid)
    for event in events:
        views.apply(session, event, reorder_window_s=None)
    activity = views.drain(session).activity
    assert [(a["video_id"], a["bytes"]) for a in activity] == [(segment_video, len(SEGMENT))] * 2


async def test_the_collector_numbers_v1_requests_strictly_increasing(client: TestClient[Any, Any]) -> None:
    collector = client.app[collector_key]
    numbers = [collector.next_v1_seq() for _ in range(1000)]
    assert numbers == sorted(set(numbers))


@pytest.mark.parametrize(
    ("user_agent", "device"),
    [
        (CHROME_LINUX, "desktop"),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Mobile/15E148", "mobile"),
        ("Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 Chrome/130.0 Safari/537.36", "tablet"),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/130.0 Mobile Safari/537.36", "mobile"),
        ("Mozilla/5.0 (SMART-TV; Linux; Tizen 8.0) AppleWebKit/537.36", "tv"),
        ("Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15", "console"),
        ("curl/8.5.0", "other"),
        (None, None),
    ],
)
def test_device_class_from_the_user_agent(user_agent: str | None, device: str | None) -> None:
    assert device_class_of(user_agent) == device
