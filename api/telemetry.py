"""The telemetry collector: player beacons in, normalised `PlaybackEvent`s on `playback.telemetry` out.

`POST /api/v1/telemetry` takes one batch of our SDK's events for one session::

    {"session_id": "…", "video_id": "…", "device_class": "desktop", "user_id": null, "profile_id": null,
     "events": [{"seq": 1, "type": "play_requested", "ts": 1764000000000, …}, …]}

- `application/json` or `text/plain` (so `navigator.sendBeacon` needs no CORS preflight);
- at most 64 KB (413), schema-checked with a 400 that names every problem;
- per-session rate limit (429 with Retry-After) and dedupe on (session_id, seq) within this process
  (the QoE agents dedupe again on seq, so a beacon retried through another API instance still counts once);
- 202 only after Kafka acknowledged every event of the batch; 503 when it did not — nothing is dropped
  silently, the player's SDK retries.

CMCD reports (v2 event mode at `POST /api/v1/cmcd`, v1 harvested from playback requests) are parsed by
common/qoe/cmcd.py and enter the same path (api/cmcd.py); the rules both collectors keep are api/collector.py's.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from api.access import optional_principal
from api.collector import EVENTS, MAX_EVENTS_PER_BATCH, accepted_response, check_rate, publish_events, read_body
from api.errors import Forbidden, InvalidRequest

ACCEPTED_TYPES = ("application/json", "text/plain")

EVENT_TYPES = {
    "play_requested": "PLAY_REQUESTED",
    "player_ready": "PLAYER_READY",
    "first_frame": "FIRST_FRAME",
    "stall_start": "STALL_START",
    "stall_end": "STALL_END",
    "seek_start": "SEEK_START",
    "seek_end": "SEEK_END",
    "rendition_change": "RENDITION_CHANGE",
    "player_resize": "PLAYER_RESIZE",
    "pause": "PAUSE",
    "play": "PLAY",
    "error": "ERROR",
    "heartbeat": "HEARTBEAT",
    "end": "END",
}
DEVICE_CLASSES = ("desktop", "mobile", "tablet", "tv", "console", "other")
# Optional per-event fields: name → (type check, PlaybackEvent field).
EVENT_FIELDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "rendition": (str, "rendition"),
    "bitrate_kbps": (int, "bitrate_kbps"),
    "video_width": (int, "video_width"),
    "video_height": (int, "video_height"),
    "player_width": (int, "player_width"),
    "player_height": (int, "player_height"),
    "playhead_s": ((int, float), "playhead_s"),
    "error_code": (str, "error_code"),
    "fatal": (bool, "fatal"),
    "bytes": (int, "bytes"),
}


def _text(value: Any, name: str, problems: dict[str, str], *, required: bool = False, limit: int = 128) -> str | None:
    if value is None:
        if required:
            problems[name] = "is required"
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        problems[name] = f"must be a non-empty string of at most {limit} characters"
        return None
    return value


def parse_batch(document: Any, received_at: datetime) -> tuple[str, list[dict[str, Any]]]:
    """Validate a beacon and normalise it into PlaybackEvent dicts; raise InvalidRequest naming each problem."""
    if not isinstance(document, dict):
        raise InvalidRequest("the body must be a JSON object")
    problems: dict[str, str] = {}
    unknown = set(document) - {"session_id", "video_id", "user_id", "profile_id", "device_class", "events"}
    for name in sorted(unknown):
        problems[name] = "is not a known field"
    session_id = _text(document.get("session_id"), "session_id", problems, required=True)
    video_id = _text(document.get("video_id"), "video_id", problems)
    user_id = _text(document.get("user_id"), "user_id", problems)
    profile_id = _text(document.get("profile_id"), "profile_id", problems)
    device_class = document.get("device_class")
    if device_class is not None and device_class not in DEVICE_CLASSES:
        problems["device_class"] = f"must be one of {', '.join(DEVICE_CLASSES)}"
    raw_events = document.get("events")
    if not isinstance(raw_events, list) or not raw_events:
        problems["events"] = "must be a non-empty list"
        raw_events = []
    elif len(raw_events) > MAX_EVENTS_PER_BATCH:
        problems["events"] = f"at most {MAX_EVENTS_PER_BATCH} per batch"
        raw_events = []
    events = []
    for index, raw in enumerate(raw_events):
        where = f"events[{index}]"
        if not isinstance(raw, dict):
            problems[where] = "must be an object"
            continue
        for name in sorted(set(raw) - {"seq", "type", "ts", *EVENT_FIELDS}):
            problems[f"{where}.{name}"] = "is not a known field"
        seq, kind, ts = raw.get("seq"), raw.get("type"), raw.get("ts")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            problems[f"{where}.seq"] = "must be a non-negative integer"
        if kind not in EVENT_TYPES:
            problems[f"{where}.type"] = f"must be one of {', '.join(EVENT_TYPES)}"
        if not isinstance(ts, int) or isinstance(ts, bool) or not 0 < ts < 2**45:
            problems[f"{where}.ts"] = "must be epoch milliseconds"
        event: dict[str, Any] = {
            "session_id": session_id,
            "seq": seq,
            "event_type": EVENT_TYPES.get(str(kind), "UNKNOWN"),
            "client_ts": datetime.fromtimestamp(ts / 1000, UTC) if isinstance(ts, int) and 0 < ts < 2**45 else None,
            "received_ts": received_at,
            "video_id": video_id,
            "user_id": user_id,
            "profile_id": profile_id,
            "device_class": device_class,
            "source": "SDK",
        }
        for name, (kinds, field) in EVENT_FIELDS.items():
            value = raw.get(name)
            if value is None:
                continue
            if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
                problems[f"{where}.{name}"] = "has the wrong type"
            elif isinstance(value, float) and not math.isfinite(value):
                problems[f"{where}.{name}"] = "must be finite"
            elif isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < 2**31 and name != "bytes":
                problems[f"{where}.{name}"] = "is out of range"
            else:
                event[field] = float(value) if isinstance(value, int | float) and field == "playhead_s" else value
        events.append(event)
    if problems:
        raise InvalidRequest("invalid telemetry batch", problems)
    assert session_id is not None
    return session_id, events


def identify(request: web.Request, document: dict[str, Any], events: list[dict[str, Any]]) -> None:
    """Who watched comes from the access token, never from the body: the resume position and watch history
    the QoE agent derives from a beacon belong to its viewer, so a client may not name someone else. A
    beacon without a token (``sendBeacon`` cannot send one) is anonymous."""
    principal = optional_principal(request)
    claimed = {name: document.get(name) for name in ("user_id", "profile_id") if document.get(name) is not None}
    if principal is None:
        if claimed:
            EVENTS.labels("refused", "SDK").inc(len(events))
            raise Forbidden("user_id and profile_id come from the access token: send Authorization: Bearer …")
        return
    if (
        claimed.get("user_id", principal.account_id) != principal.account_id
        or claimed.get("profile_id", principal.profile_id) != principal.profile_id
    ):
        EVENTS.labels("refused", "SDK").inc(len(events))
        raise Forbidden("the beacon names another viewer than the access token")
    for event in events:
        event["user_id"] = principal.account_id
        event["profile_id"] = principal.profile_id


def parse_json(body: bytes) -> Any:
    """The body's JSON document, read by orjson (a few times faster than the json module on a beacon).

    What orjson refuses goes through the json module as before, so the edge cases keep their old answers: a
    UTF-16 body, NaN (a 400 naming the field that must be finite), an integer beyond 64 bits (judged by the
    field's own rule), and a body that is not JSON at all (this 400, with json's position of the error).
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest("the body is not JSON", {"position": getattr(exc, "pos", None)}) from None


async def collect_beacon(request: web.Request) -> web.Response:
    """`POST /api/v1/telemetry`."""
    body = await read_body(request, ACCEPTED_TYPES)
    try:
        document = parse_json(body)
    except InvalidRequest:
        EVENTS.labels("refused", "SDK").inc()
        raise
    try:
        session_id, events = parse_batch(document, datetime.now(UTC))
    except InvalidRequest:
        EVENTS.labels("refused", "SDK").inc()
        raise
    check_rate(request, session_id, len(events), "SDK")
    identify(request, document, events)
    accepted = await publish_events(request.app, session_id, events, "SDK")
    return accepted_response(accepted, len(events) - accepted)
