"""CMCD (CTA-5004) collection: v2 event-mode reports POSTed to a collector, and v1 data harvested from the
playback requests that reach the API. Both become `PlaybackEvent`s on `playback.telemetry`, keyed by the
CMCD session id (``sid``), beside our SDK's beacons (api/telemetry.py).

* ``POST /api/v1/cmcd`` — CMCD v2 event mode: the body holds one RFC 8941 dictionary per line
  (``application/cmcd``, or ``text/plain`` so ``navigator.sendBeacon`` needs no preflight), each a report
  with ``e``, ``sid``, ``sn`` and ``ts``; a report without a body may also come as a ``CMCD=`` query argument.
  Every report must carry ``sid``; a batch may mix sessions. Same rules as the SDK's beacons (api/collector.py):
  64 KB cap, a 400 naming what is wrong, 429 per session, dedupe on (sid, sn), 202 only once Kafka acknowledged
  every event, 503 when it did not. The player state of each session's last ``ps`` report is remembered
  (bounded, per API process) so a later ``sta=p`` is named FIRST_FRAME / STALL_END / …; when it is not known the
  event still says "playing" (``sta=p``), which the QoE state machine reads the same way.
* CMCD v1 request mode — hls.js, dash.js and Shaka send it on every manifest and segment request, as a
  ``CMCD=`` query argument or in ``CMCD-Object/Request/Session/Status`` headers. ``harvest_cmcd`` (a
  middleware on the GET/HEAD routes of a video) parses it, serves the request as usual, and publishes a
  CMCD_REQUEST event with the response's size, the video and rendition from the request path, and the device
  class from the User-Agent. The event's video is always the one served: the player's ``cid`` is the
  integrator's label (any string, e.g. "holdout") and stays in ``extras["cid"]``. A malformed CMCD value never
  fails playback: it is counted (``refused``) and logged at DEBUG. Publishing does not hold the media response
  back: it runs after the response, and an event Kafka does not acknowledge is counted (``unavailable``) and
  logged — never dropped without a trace. The collector numbers v1 requests itself (a microsecond clock, strictly
  increasing per process), so a replayed Kafka message keeps its number and is counted once, while two
  downloads of one segment are two requests.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from api.collector import EVENTS, MAX_EVENTS_PER_BATCH, accepted_response, check_rate, publish_events, read_body
from api.errors import InvalidRequest
from api.keys import collector_key
from common.qoe import cmcd

log = logging.getLogger(__name__)

EVENT_REPORT_TYPES = ("application/cmcd", "text/plain")
HARVEST_DRAIN_S = 10.0

# Coarse device classes from a User-Agent, most specific first. A CMCD-only player tells us nothing else
# about its device, and the windows only need these six classes, so a short ordered list is enough.
DEVICE_PATTERNS = (
    ("tv", re.compile(r"SmartTV|SMART-TV|Tizen|Web0S|webOS|AppleTV|CrKey|AFT[A-Z]|Roku|BRAVIA|HbbTV", re.I)),
    ("console", re.compile(r"PlayStation|Xbox|Nintendo", re.I)),
    ("tablet", re.compile(r"iPad|Tablet|Android(?!.*Mobile)", re.I)),
    ("mobile", re.compile(r"Mobile|iPhone|iPod|Android", re.I)),
    ("desktop", re.compile(r"Windows NT|Macintosh|X11|CrOS|Linux x86_64", re.I)),
)


def device_class_of(user_agent: str | None) -> str | None:
    if not user_agent:
        return None
    for name, pattern in DEVICE_PATTERNS:
        if pattern.search(user_agent):
            return name
    return "other"


def _reports_of(request: web.Request, body: bytes) -> list[dict[str, Any]]:
    if body.strip():
        return cmcd.parse_event_report(body)
    if "CMCD" in request.query:
        return [cmcd.parse_query(request.query_string)]
    raise cmcd.CmcdError("no CMCD report: send one dictionary per line, or a CMCD query argument")


async def collect_event_reports(request: web.Request) -> web.Response:
    """`POST /api/v1/cmcd`: CMCD v2 event-mode reports."""
    body = await read_body(request, EVENT_REPORT_TYPES) if request.body_exists else b""
    received = datetime.now(UTC)
    try:
        reports = _reports_of(request, body)
    except cmcd.CmcdError as exc:
        EVENTS.labels("refused", "CMCD_V2").inc()
        raise InvalidRequest("invalid CMCD report", {"reason": str(exc)}) from None
    if len(reports) > MAX_EVENTS_PER_BATCH:
        EVENTS.labels("refused", "CMCD_V2").inc(len(reports))
        raise InvalidRequest("invalid CMCD report", {"reports": f"at most {MAX_EVENTS_PER_BATCH} per request"})
    by_session: dict[str, list[dict[str, Any]]] = {}
    problems = {}
    for number, report in enumerate(reports, start=1):
        sid = report.get("sid")
        if not isinstance(sid, str) or not sid:
            problems[f"report {number}"] = "needs sid (the session id)"
        elif "sn" not in report:
            problems[f"report {number}"] = "needs sn (the report's sequence number)"
        elif "e" not in report:
            problems[f"report {number}"] = "needs e (the event)"
        else:
            by_session.setdefault(sid, []).append(report)
    if problems:
        EVENTS.labels("refused", "CMCD_V2").inc(len(reports))
        raise InvalidRequest("invalid CMCD report", problems)
    collector = request.app[collector_key]
    device = device_class_of(request.headers.get(hdrs.USER_AGENT))
    mapped: dict[str, list[dict[str, Any]]] = {}
    for sid, session_reports in by_session.items():
        check_rate(request, sid, len(session_reports), "CMCD_V2")
        try:
            events, last = cmcd.v2_events(
                session_reports, received_ts=received, previous_sta=collector.play_state.get(sid)
            )
        except cmcd.CmcdError as exc:
            EVENTS.labels("refused", "CMCD_V2").inc(len(session_reports))
            raise InvalidRequest("invalid CMCD report", {"sid": sid, "reason": str(exc)}) from None
        for event in events:
            event["device_class"] = event.get("device_class") or device
        mapped[sid] = events
        collector.remember(sid, last)
    accepted = 0
    for sid, events in mapped.items():
        accepted += await publish_events(request.app, sid, events, "CMCD_V2")
    return accepted_response(accepted, len(reports) - accepted)


def v1_data(request: web.Request) -> dict[str, Any] | None:
    """The request's CMCD v1 data (query argument or headers), None when it carries none."""
    if "CMCD" in request.query:
        return cmcd.parse_query(request.query_string)
    if any(name.lower().startswith("cmcd-") for name in request.headers):
        return cmcd.parse_headers(request.headers.items()) or None
    return None


@web.middleware
async def harvest_cmcd(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve a playback request, then publish the CMCD v1 data it carried (see the module docstring)."""
    # Playback routes are the GET/HEAD routes of a video ({video_id} in the path).
    if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD) or "video_id" not in request.match_info:
        return await handler(request)
    received = datetime.now(UTC)
    try:
        data = v1_data(request)
    except cmcd.CmcdError as exc:
        EVENTS.labels("refused", "CMCD_V1").inc()
        # DEBUG, not INFO: a player with a malformed CMCD setting sends it on every segment request, and the
        # counter above already says how many were refused.
        log.debug("CMCD data of %s refused: %s", request.path, exc)
        data = None
    response = await handler(request)
    if data is None or response.status >= 400:
        return response
    sid = data.get("sid")
    if not isinstance(sid, str) or not sid:
        EVENTS.labels("refused", "CMCD_V1").inc()
        return response
    collector = request.app[collector_key]
    event = cmcd.v1_event(
        data,
        seq=collector.next_v1_seq(),
        received_ts=received,
        # The bytes were this video's, whatever cid the player was configured with.
        video_id=request.match_info["video_id"],
        nbytes=_bytes_sent(response),
    )
    event["rendition"] = request.match_info.get("rendition")
    event["device_class"] = device_class_of(request.headers.get(hdrs.USER_AGENT))
    collector.harvested += 1
    task = asyncio.create_task(_publish_request(request.app, sid, event))
    collector.pending.add(task)
    task.add_done_callback(collector.pending.discard)
    return response


def _bytes_sent(response: web.StreamResponse) -> int | None:
    if response.content_length is not None:
        return response.content_length
    body_length = getattr(response, "body_length", None)
    return int(body_length) if body_length else None


async def _publish_request(app: web.Application, sid: str, event: dict[str, Any]) -> None:
    try:
        await publish_events(app, sid, [event], "CMCD_V1")
    except Exception as exc:  # counted as unavailable by publish_events; the media was served anyway
        log.warning("CMCD request of session %s not stored: %s", sid, exc)


async def drain_harvest_ctx(app: web.Application) -> AsyncIterator[None]:
    """Registered after the event publisher's context, so on shutdown it runs first: requests harvested just
    before still reach Kafka (or are counted as unavailable) before the publisher closes."""
    yield
    pending = list(app[collector_key].pending)
    if pending:
        await asyncio.wait(pending, timeout=HARVEST_DRAIN_S)
