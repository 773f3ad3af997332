"""Builders for hand-written PlaybackEvent sequences (times in ms after T0) shared by the QoE unit tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from common.qoe import views
from common.qoe.views import ViewMetrics, from_ms

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SID = "sess-1"


def ev(seq: int, event_type: str, at_ms: int, **fields: Any) -> dict[str, Any]:
    """A PlaybackEvent dict with every schema field, at T0 + at_ms."""
    event: dict[str, Any] = {
        "session_id": SID,
        "seq": seq,
        "event_type": event_type,
        "client_ts": from_ms(T0 + at_ms),
        "received_ts": from_ms(T0 + at_ms + 150),
        "video_id": "video-a",
        "user_id": None,
        "profile_id": None,
        "device_class": "desktop",
        "rendition": None,
        "bitrate_kbps": None,
        "video_width": None,
        "video_height": None,
        "player_width": None,
        "player_height": None,
        "playhead_s": None,
        "error_code": None,
        "fatal": False,
        "bytes": None,
        "source": "SDK",
        "extras": {},
    }
    event.update(fields)
    return event


def numbered(*specs: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Events from (event_type, at_ms, {fields}) tuples, numbered from seq 0 in the order given."""
    out = []
    for seq, spec in enumerate(specs):
        etype, at = spec[0], spec[1]
        fields = spec[2] if len(spec) > 2 else {}
        out.append(ev(seq, etype, at, **fields))
    return out


def r720() -> dict[str, Any]:
    return {"rendition": "720p", "bitrate_kbps": 4500, "video_width": 1280, "video_height": 720}


def r1080() -> dict[str, Any]:
    return {"rendition": "1080p", "bitrate_kbps": 7800, "video_width": 1920, "video_height": 1080}


def run(
    events: Iterable[dict[str, Any]],
    *,
    reorder_window_s: float | None = views.DEFAULT_REORDER_WINDOW_S,
    json_roundtrip: bool = False,
    close: bool = True,
) -> list[ViewMetrics]:
    """Apply the events to a fresh session; close what is still open; every ViewMetrics in close order."""
    state = views.new_session(SID)
    out: list[ViewMetrics] = []
    for event in events:
        state = views.apply(state, event, reorder_window_s=reorder_window_s)
        if json_roundtrip:
            state = json.loads(json.dumps(state))
        out += views.drain(state).views
    if close:
        last = views.close(state, "inactive")
        out += views.drain(state).views
        if last is not None:
            out.append(last)
    return out
