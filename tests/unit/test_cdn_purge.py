"""The CDN purge in memory: which lifecycle events purge, duplicates, retries until the edge confirms, the agent
in Faust's test_context (no broker), the one writer of an agent's status and the event it publishes, and the
purge interface's HTTP request against an in-process stand-in for the edge."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from common.avro import AvroCodec
from processors import cdn_purge, dead_letters
from processors import status as status_module
from processors.cdn_purge import EdgePurger, purge_reason
from sinks.cdn_edge import CdnEdge, EdgePurgeError, NoEdge

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CODEC = AvroCodec()
REMOVED = {"comment_id": "c1", "video_id": "v1", "removed_by": "a1", "removed_at": T}


def status(video_id: str, value: str, at: datetime = T) -> dict[str, Any]:
    return {"video_id": video_id, "status": value, "reason": None, "changed_at": at, "progress": None}


def privacy(video_id: str, new: str = "PRIVATE", old: str | None = "PUBLIC", at: datetime = T) -> dict[str, Any]:
    return {"video_id": video_id, "privacy": new, "previous_privacy": old, "changed_at": at, "changed_by": "a1"}


class FakeEdge:
    """Records purges; fails the first ``failures`` of them like an unreachable edge."""

    def __init__(self, failures: int = 0) -> None:
        self.purged: list[str] = []
        self.attempts = 0
        self.failures = failures

    async def purge_video(self, video_id: str) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise EdgePurgeError("edge unreachable")
        self.purged.append(video_id)

    async def close(self) -> None:
        return None


class Sleeps:
    def __init__(self) -> None:
        self.waited: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)


@pytest.mark.parametrize(
    ("record", "value", "reason"),
    [
        ("VideoStatusChanged", status("v1", "DELETED"), "deleted"),
        ("VideoStatusChanged", status("v1", "READY"), "ready"),
        ("VideoStatusChanged", status("v1", "FAILED"), "failed"),
        ("VideoPrivacyChanged", privacy("v1", "PRIVATE", "PUBLIC"), "privacy"),
        ("VideoPrivacyChanged", privacy("v1", "UNLISTED", "PUBLIC"), "privacy"),
        ("VideoPrivacyChanged", privacy("v1", "PUBLIC", "PRIVATE"), "privacy"),
        ("VideoStatusChanged", status("v1", "UPLOADING"), None),
        ("VideoStatusChanged", status("v1", "PROCESSING"), None),
        ("VideoStatusChanged", status("v1", "PLAYABLE"), None),
    ],
)
def test_which_events_purge(record: str, value: dict[str, Any], reason: str | None) -> None:
    assert purge_reason(record, value) == reason


async def test_purges_deleted_ready_and_privacy_changes_only() -> None:
    edge = FakeEdge()
    purger = EdgePurger(edge, sleep=Sleeps())
    events = [
        ("VideoStatusChanged", status("a", "PROCESSING")),
        ("VideoStatusChanged", status("a", "PLAYABLE")),
        ("VideoStatusChanged", status("a", "READY")),
        ("VideoPrivacyChanged", privacy("b")),
        ("VideoStatusChanged", status("c", "DELETED")),
    ]
    done = [await purger.handle(record, value) for record, value in events]
    assert done == [False, False, True, True, True]
    assert edge.purged == ["a", "b", "c"]


async def test_a_duplicate_is_not_purged_twice_but_a_new_change_is() -> None:
    edge = FakeEdge()
    purger = EdgePurger(edge, sleep=Sleeps())
    assert await purger.handle("VideoStatusChanged", status("v1", "DELETED"))
    # A repeated delete publishes DELETED again with the first delete's time: the same event.
    assert not await purger.handle("VideoStatusChanged", status("v1", "DELETED"))
    assert await purger.handle("VideoPrivacyChanged", privacy("v2", at=T))
    assert await purger.handle("VideoPrivacyChanged", privacy("v2", "PUBLIC", "PRIVATE", at=T + timedelta(seconds=1)))
    assert edge.purged == ["v1", "v2", "v2"]


async def test_a_replay_in_a_new_process_purges_again_harmlessly() -> None:
    edge = FakeEdge()
    for _ in range(2):  # a worker restarted after a crash: a new purger, the same event
        assert await EdgePurger(edge, sleep=Sleeps()).handle("VideoStatusChanged", status("v1", "DELETED"))
    assert edge.purged == ["v1", "v1"]


async def test_the_duplicate_memory_is_bounded() -> None:
    edge = FakeEdge()
    purger = EdgePurger(edge, sleep=Sleeps(), remember=2)
    for video_id in ("a", "b", "c"):
        await purger.handle("VideoStatusChanged", status(video_id, "DELETED"))
    assert await purger.handle("VideoStatusChanged", status("a", "DELETED"))  # forgotten: purged again
    assert not await purger.handle("VideoStatusChanged", status("c", "DELETED"))
    assert edge.purged == ["a", "b", "c", "a"]


async def test_a_failed_purge_is_retried_with_backoff_until_confirmed() -> None:
    edge = FakeEdge(failures=4)
    sleeps = Sleeps()
    assert await EdgePurger(edge, sleep=sleeps).handle("VideoStatusChanged", status("v1", "DELETED"))
    assert edge.attempts == 5 and edge.purged == ["v1"]
    assert sleeps.waited == [0.5, 1.0, 2.0, 4.0]


async def test_backoff_is_capped() -> None:
    edge = FakeEdge(failures=12)
    sleeps = Sleeps()
    await EdgePurger(edge, sleep=sleeps).handle("VideoPrivacyChanged", privacy("v1"))
    assert max(sleeps.waited) == cdn_purge.RETRY_MAX_S and sleeps.waited[-1] == cdn_purge.RETRY_MAX_S


async def test_an_id_no_route_serves_is_not_sent_to_the_edge() -> None:
    edge = FakeEdge()
    assert not await EdgePurger(edge, sleep=Sleeps()).handle("VideoStatusChanged", status("../x", "DELETED"))
    assert edge.purged == [] and edge.attempts == 0


async def test_no_edge_configured_purges_nothing_and_succeeds() -> None:
    purger = EdgePurger(NoEdge(), sleep=Sleeps())
    assert await purger.handle("VideoStatusChanged", status("v1", "DELETED"))


# --- the agents, in process ----------------------------------------------------------------------


@pytest.fixture
def parked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []

    async def dead_letter(app: Any, event: Any, error: BaseException, agent: str, payload: bytes | None = None) -> None:
        found.append((agent, str(error)))

    monkeypatch.setattr(dead_letters, "dead_letter", dead_letter)
    return found


async def test_the_agent_purges_from_the_topics_records_and_parks_poison(
    monkeypatch: pytest.MonkeyPatch, parked: list[tuple[str, str]]
) -> None:
    edge = FakeEdge()
    purger = EdgePurger(edge, sleep=Sleeps())
    monkeypatch.setattr(cdn_purge, "purger", lambda: purger)
    async with cdn_purge.purge_cdn_edge.test_context() as agent:
        await agent.put(CODEC.encode("VideoStatusChanged", status("a", "PROCESSING")))
        await agent.put(CODEC.encode("VideoPrivacyChanged", privacy("b")))
        await agent.put(b"\x00\x00garbage")
        await agent.put(CODEC.encode("CommentRemoved", REMOVED))  # decodes, but is no lifecycle record
        await agent.put(CODEC.encode("VideoStatusChanged", status("c", "DELETED")))
        await agent.put(CODEC.encode("VideoStatusChanged", status("c", "DELETED")))  # delivered twice
    assert edge.purged == ["b", "c"]
    assert [agent for agent, _ in parked] == ["purge_cdn_edge", "purge_cdn_edge"]


class FakeCatalog:
    def __init__(self) -> None:
        self.statuses: list[tuple[str, str]] = []

    async def set_status(self, video_id: str, value: str, reason: str | None, at: datetime) -> None:
        self.statuses.append((video_id, value))


async def test_an_agents_status_is_written_once_and_published_in_the_events_spelling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """publish_status is the one writer of an agent's status: the row (catalogue spelling), then the event."""
    catalog = FakeCatalog()
    sent: list[tuple[bytes, bytes]] = []

    async def send(*, key: bytes, value: bytes) -> None:
        sent.append((key, value))

    monkeypatch.setattr(status_module, "catalog", lambda: catalog)
    monkeypatch.setattr(status_module.lifecycle_topic, "send", send)
    await status_module.publish_status("a", "ready")
    await status_module.publish_status("a", "failed", "no video stream")
    assert catalog.statuses == [("a", "ready"), ("a", "failed")]
    events = [(key, CODEC.decode(value, "VideoStatusChanged")) for key, value in sent]
    assert [(key, event["status"], event["reason"]) for key, event in events] == [
        (b"a", "READY", None),
        (b"a", "FAILED", "no video stream"),
    ]
    assert [purge_reason("VideoStatusChanged", event) for _, event in events] == ["ready", "failed"]


# --- the purge interface's request ----------------------------------------------------------------


class RawEdge:
    """A stand-in for the edge on a loopback port, at the socket level: aiohttp's own server refuses BAN."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.requests: list[list[str]] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head.decode().split("\r\n"))
        reason = self.status.partition(" ")[2]
        writer.write(f"HTTP/1.1 {self.status}\r\nContent-Length: {len(reason)}\r\n\r\n{reason}".encode())
        await writer.drain()
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def test_purge_video_sends_a_ban_naming_the_video() -> None:
    raw = RawEdge("200 Banned")
    async with raw as url:
        edge = CdnEdge(url)
        try:
            await edge.purge_video("v-123")
        finally:
            await edge.close()
    [request] = raw.requests
    assert request[0] == "BAN /api/v1/videos/v-123/ HTTP/1.1"
    assert "X-Purge-Video: v-123" in request


async def test_a_refused_or_unreachable_purge_raises() -> None:
    raw = RawEdge("405 Purging not allowed")
    async with raw as url:
        edge = CdnEdge(url)
        try:
            with pytest.raises(EdgePurgeError, match="405 Purging not allowed"):
                await edge.purge_video("v1")
        finally:
            await edge.close()
    gone = CdnEdge(url, timeout_s=2)  # the stand-in above has stopped listening
    try:
        with pytest.raises(EdgePurgeError, match="unreachable"):
            await gone.purge_video("v1")
    finally:
        await gone.close()
    with pytest.raises(ValueError, match="not a video id"):
        await CdnEdge("http://127.0.0.1:1").purge_video("a/b")
    with pytest.raises(ValueError, match="EDGE_URL"):
        CdnEdge("127.0.0.1:8081")
