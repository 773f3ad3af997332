"""What the two collectors share — api/telemetry.py (our SDK's beacons) and api/cmcd.py (CMCD reports) — so that
both keep the same rules on their way to `playback.telemetry`:

- a body of at most 64 KB (413), of an accepted content type (415);
- at most RATE_LIMIT_BATCHES batches per session in RATE_LIMIT_WINDOW_S (429 with Retry-After; api/state.py);
- dedupe on (session_id, source, seq) within this process (the QoE agents dedupe again on seq, so a beacon retried
  through another API instance still counts once);
- 202 only after Kafka acknowledged every event of the batch; 503 when it did not — nothing is dropped silently,
  the player retries.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import Counter, Histogram

from api.errors import PayloadTooLarge, TooManyRequests, Unavailable, UnsupportedMediaType
from api.keys import events_key, limits_key, settings_key
from common import topics
from producers.video_events import BatchPublishError, PublishError

MAX_BODY_BYTES = 64 * 1024
MAX_EVENTS_PER_BATCH = 500

EVENTS = Counter("telemetry_events_total", "Telemetry events by outcome", ["outcome", "source"])
PRODUCE_SECONDS = Histogram(
    "telemetry_produce_seconds",
    "Time for Kafka to acknowledge one beacon's events",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


async def read_body(request: web.Request, accepted: tuple[str, ...]) -> bytes:
    content_type = request.content_type
    if content_type not in accepted:
        raise UnsupportedMediaType(f"send {' or '.join(accepted)}")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("telemetry batch too large", {"max_bytes": MAX_BODY_BYTES})
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge("telemetry batch too large", {"max_bytes": MAX_BODY_BYTES})
    return body


def check_rate(request: web.Request, session_id: str, count: int, source: str) -> None:
    """429 with Retry-After when the session sent too many batches lately."""
    wait_s = request.app[limits_key].batches.allow(session_id)
    if wait_s is not None:
        EVENTS.labels("rate_limited", source).inc(count)
        raise TooManyRequests(wait_s, "too many beacons for this session")


async def publish_events(app: web.Application, session_id: str, events: list[dict[str, Any]], source: str) -> int:
    """Produce each first-seen event; 503 unless Kafka acknowledged all of them. Returns how many were new.

    One batch per call (``publish_batch``): a single wait for the last delivery report, however many events.
    """
    limits = app[limits_key]
    fresh = [event for event in events if limits.first_time(session_id, event["source"], event["seq"])]
    EVENTS.labels("duplicate", source).inc(len(events) - len(fresh))
    if not fresh:
        return 0
    topic = app[settings_key].topic(topics.PLAYBACK_TELEMETRY)
    began = time.monotonic()
    try:
        await app[events_key].publish_batch(topic, session_id, "PlaybackEvent", fresh)
    except (PublishError, ValueError) as exc:
        # A value the schema refuses stops the whole batch before anything is produced; otherwise only the
        # events Kafka did not acknowledge were lost. Either way they may be sent again.
        failed = [fresh[index] for index in exc.failed] if isinstance(exc, BatchPublishError) else fresh
        for event in failed:
            limits.forget(session_id, event["source"], event["seq"])
        EVENTS.labels("unavailable", source).inc(len(failed))
        raise Unavailable("telemetry not stored, retry", {"reason": str(exc)[:200]}) from None
    finally:
        PRODUCE_SECONDS.observe(time.monotonic() - began)
    EVENTS.labels("accepted", source).inc(len(fresh))
    return len(fresh)


def accepted_response(accepted: int, duplicates: int) -> web.Response:
    """The 202 of a collector, serialised by orjson."""
    body = orjson.dumps({"accepted": accepted, "duplicates": duplicates})
    return web.Response(body=body, status=202, content_type="application/json", charset="utf-8")
