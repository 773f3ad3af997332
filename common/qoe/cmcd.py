"""CMCD (CTA-5004 Common Media Client Data) parsing, and its mapping to PlaybackEvent dicts.

Unmodified hls.js / dash.js / Shaka players send CMCD two ways, both RFC 8941 structured-field
dictionaries, parsed here with the ``http_sfv`` library:

* v1 (CTA-5004) request mode, on every media request: a ``CMCD=`` query argument (the URL-encoded
  dictionary: ``parse_query``) or the four headers ``CMCD-Object`` (br, d, ot, tb), ``CMCD-Request`` (bl, dl,
  mtp, nor, nrr, su), ``CMCD-Session`` (cid, pr, sf, sid, st, v) and ``CMCD-Status`` (bs, rtp)
  (``parse_headers``, which merges them and refuses a key given twice).
* v2 (CTA-5004-B) event mode: reports POSTed to a collector (``application/cmcd``, one dictionary per line:
  ``parse_event_report``), each with ``e`` (the event), ``ts`` and ``sn``, plus the v1 keys.

Value types are checked per key: a key of a known type with a value of another type (a token where a string
is due, ``br="3200"``, ``bs=5``, ...) is malformed, as is anything RFC 8941 refuses; both raise
``CmcdError`` (a ValueError) naming the key or the parse failure. Integers, booleans (a bare key is true),
tokens and strings come out as Python ``int``, ``bool``, ``Token`` (a ``str`` subclass) and ``str``; decimals
as ``float``; inner lists as ``ItemList`` (a list of ``Item``: value + parameters, e.g. ``br=(3200;v 128;a)``
in v2, where the parameter names the object type). Unknown and custom (``com.example-key``) keys are kept.

Key meanings quoted from CTA-5004-B (as reproduced in the SVTA common-media-library):

==========  ===============================================================================================
br          encoded bitrate (kbps); in event mode "the encoded bitrate of the currently selected
            representation"
bl          buffer length (ms) "associated with the media object being requested", rounded to 100 ms
bs          buffer starvation: "the player buffer was starved at some point between the prior report and
            this report ... resulting in the player entering a rebuffering state"
cid / sid   content id (max 128 chars) / session id ("a GUID identifying the current playback session")
d / dl      object duration (ms) / deadline until the object is needed to avoid an underrun (ms)
mtp / rtp   measured throughput (kbps) / requested maximum throughput (kbps)
nor         next object request (relative path); ot: object type m, a, v, av, i, c, tt, k, o
pr / sf     playback rate / streaming format d (DASH), h (HLS), s (Smooth), e (HESP), o
st / su     stream type v (VOD), l (live), ll (low-latency live) / startup: "the object is needed urgently
            due to startup, seeking or recovery after a buffer-empty event"
tb / v      top bitrate (kbps) / CMCD version (absent means 1)
e           event: ps play-state change, e error, t time interval, c content id changed, b backgrounded,
            rr response received, bc bitrate change, m / um mute / unmute, pe / pc player expand /
            collapse, and ad / custom events
sta         player state: s starting ("instructed to play"), p playing ("media is being rendered"),
            k seeking, r rebuffering ("not reported during startup or seeking"), a paused, w waiting,
            e ended ("completion of the media asset"), f fatal error ("irrecoverable"), q quit ("user
            initiated end of playback before media asset completion"), d preloading
msd         media start delay: "the time difference between the starting and playing states" (ms),
            sent once per session
bsa / bsd   buffer starvation count since session start / duration(s) of the starvation(s) just ended (ms)
bsda        buffer starvation duration since session start (ms)
pb / pt     playhead bitrate ("of the media object(s) being shown", kbps) / playhead time (ms)
ec          player error code(s), an inner list of strings
sn          "a monotonically increasing integer to identify the sequence of a CMCD report to a target
            within a session. This MUST be reset to zero on the start of a new session-id."
ts          timestamp of the event (ms since the Unix epoch); dfa: dropped frames since session start
==========  ===============================================================================================

Mapping to PlaybackEvent (``v1_event``, ``v2_event`` / ``v2_events``); every key not mapped to a field is
kept in ``extras`` as text (ints and decimals as numbers, booleans ``true``/``false``, tokens and strings
bare, inner lists in their RFC 8941 form such as ``(21300;v 400;a)``):

=====================  ==================================================================================
v1 request             CMCD_REQUEST, source CMCD_V1: session_id = sid, video_id = the video the request
                       served (the caller's, from the request path), bitrate_kbps = br, playhead_s = pt /
                       1000 if sent; ``cid`` stays in extras: it is whatever the integrator configured (a
                       player set up with ``cid: "holdout"`` sends that on every request), so taking it as
                       the video would let any client book its bytes on any video. ``bs`` stays in extras as
                       ``bs=true``, which the view state machine counts as a starvation mark (a stall
                       happened since the previous request; its duration is unknown). seq: the caller's
                       counter; client_ts: ts if sent, else the receive time.
v2 ``e=ps``, sta=s     PLAY_REQUESTED
sta=p                  after s: FIRST_FRAME; after r: STALL_END; after k: SEEK_END; after a: PLAY; with no
                       (or another) previous state in the batch / given by the caller: CMCD_EVENT. All keep
                       ``sta=p`` in extras, which the view state machine reads as "playing" (ends startup,
                       a stall, a seek or a pause), so the result does not depend on knowing the previous
                       state.
sta=r / k / a          STALL_START / SEEK_START / PAUSE
sta=w                  PAUSE. Uncertain: one draft says "playback has been paused by the player", another
                       "waiting for a user action"; either way the viewer is not watching progress.
sta=e / q              END (``sta`` in extras tells ended from quit; a quit before the first frame is an
                       exit before video start)
sta=f                  ERROR with fatal = true, error_code from ec
sta=d                  CMCD_EVENT (preloading: loading ahead of a start that has not been requested)
``e=e``                ERROR, fatal only when the report also says sta=f (CMCD has no fatal flag; a fatal
                       error is signalled by the f state), error_code = ec joined with ","
``e=t``                HEARTBEAT: playhead_s = pt / 1000, bitrate_kbps = pb (else br)
``e=bc``               RENDITION_CHANGE with bitrate_kbps = br (no rendition name or size in CMCD)
``e=rr``               CMCD_REQUEST (a response received; url, rc, ttfb, ttlb in extras)
``e=c`` / b / others   CMCD_EVENT (content change: video_id = the new cid)
v2, every report       video_id = cid: an event-mode report describes no request of ours, so the player's
                       content id is all there is (as the SDK's beacons name their video)
=====================  ==================================================================================

v2 seq is ``sn``; a report without ``sn`` takes the caller's counter. msd, bsa, bsd, bsda, dfa, ... stay in
extras: the metrics come from the state transitions, not from the player's own aggregates.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple

import http_sfv
from http_sfv import Token

from common.qoe.views import from_ms, to_ms

__all__ = [
    "CmcdError",
    "Item",
    "ItemList",
    "Token",
    "parse_dictionary",
    "parse_query",
    "parse_headers",
    "parse_event_report",
    "v1_event",
    "v2_event",
    "v2_events",
]

HEADERS: Final = ("cmcd-object", "cmcd-request", "cmcd-session", "cmcd-status")
MAX_LENGTH: Final = 16_384  # far above any real CMCD payload; refuses abuse before parsing


class CmcdError(ValueError):
    """Malformed CMCD data (not an RFC 8941 dictionary, a value of the wrong type, a missing key)."""


class Item(NamedTuple):
    """One member of an inner list: its value and its parameters (``{"v": True}`` for ``3200;v``)."""

    value: Any
    params: dict[str, Any]


class ItemList(list[Item]):
    """An inner list: a list of ``Item`` that also keeps the list's own parameters (``(1 2);p``)."""

    def __init__(self, items: Iterable[Item] = (), params: Mapping[str, Any] | None = None) -> None:
        super().__init__(items)
        self.params: dict[str, Any] = dict(params or {})


# Expected type of each key defined by CTA-5004 / CTA-5004-B.
_INT, _NUM, _BOOL, _TOKEN, _STR, _INTS, _STRS = "integer", "number", "boolean", "token", "string", "ints", "strs"
KEY_TYPES: Final[Mapping[str, str]] = {
    **dict.fromkeys(("br", "bl", "mtp", "tb", "lb", "ab", "tab", "lab", "tpb", "pb", "tbl"), _INTS),
    **dict.fromkeys(("bsa", "bsd", "bsda"), _INTS),
    **dict.fromkeys(("d", "dl", "rtp", "pt", "msd", "sn", "ts", "dfa", "df", "ltc", "rc", "v"), _INT),
    **dict.fromkeys(("ttfb", "ttfbb", "ttlb"), _INT),
    "pr": _NUM,
    **dict.fromkeys(("bs", "su", "bg", "nr"), _BOOL),
    **dict.fromkeys(("ot", "sf", "st", "sta", "e"), _TOKEN),
    **dict.fromkeys(("sid", "cid", "cdn", "h", "url", "cen", "nrr", "cs", "cmsdd", "cmsds", "smrt"), _STR),
    **dict.fromkeys(("ec", "nor"), _STRS),
}


# ---------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------


def _bare(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    return value


def _check(key: str, value: Any) -> None:
    expected = KEY_TYPES.get(key)
    if expected is None:
        return
    if isinstance(value, list):
        ok = expected in (_INTS, _STRS) and all(
            (type(item.value) is int) if expected == _INTS else (type(item.value) is str) for item in value
        )
    elif expected in (_INT, _INTS):
        ok = type(value) is int
    elif expected == _NUM:
        ok = type(value) in (int, float)
    elif expected == _BOOL:
        ok = type(value) is bool
    elif expected == _TOKEN:
        ok = isinstance(value, Token)
    else:  # a string, or one string where an inner list of strings is due (v1 sends nor as a string)
        ok = type(value) is str
    if not ok:
        shown = [i.value for i in value] if isinstance(value, list) else value
        raise CmcdError(f"CMCD key {key!r} must be {_describe(expected)}, got {shown!r}")


def _describe(expected: str) -> str:
    return {
        _INT: "an integer",
        _NUM: "a number",
        _BOOL: "a boolean",
        _TOKEN: "a token",
        _STR: "a string",
        _INTS: "an integer or an inner list of integers",
        _STRS: "a string or an inner list of strings",
    }[expected]


def parse_dictionary(text: str | bytes) -> dict[str, Any]:
    """One CMCD dictionary (``br=3200,bs,sid="..."``) as ``{key: value}``; ``{}`` for empty input."""
    data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
    if len(data) > MAX_LENGTH:
        raise CmcdError(f"CMCD data too long ({len(data)} bytes)")
    if not data.strip(b" \t"):
        return {}
    parsed = http_sfv.Dictionary()
    try:
        parsed.parse(data)
    except ValueError as exc:
        reason = exc.__cause__ or exc
        raise CmcdError(f"not an RFC 8941 dictionary: {reason or 'syntax error'} in {text!r:.200}") from exc
    out: dict[str, Any] = {}
    for key, member in parsed.items():
        if isinstance(member, http_sfv.InnerList):
            value: Any = ItemList((Item(_bare(i.value), dict(i.params)) for i in member), member.params)
        else:
            value = _bare(member.value)
        _check(key, value)
        out[key] = value
    return out


def parse_query(url_or_query: str) -> dict[str, Any]:
    """The ``CMCD`` query argument of a URL (or of a bare query string), URL-decoded and parsed."""
    # A URL (absolute or a path) has its query after "?"; anything else is taken as the query itself.
    query = urllib.parse.urlsplit(url_or_query).query if "?" in url_or_query else url_or_query
    values = [v for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True) if k == "CMCD"]
    if not values:
        raise CmcdError("no CMCD query argument")
    if len(set(values)) > 1:
        raise CmcdError("more than one CMCD query argument")
    return parse_dictionary(values[0])


def parse_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, Any]:
    """The four ``CMCD-Object/Request/Status/Session`` headers merged (names case-insensitive; other headers
    ignored; ``{}`` when none is present). A key sent in two headers is refused."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name.lower() not in HEADERS:
            continue
        for key, parsed in parse_dictionary(value).items():
            if key in out:
                raise CmcdError(f"CMCD key {key!r} sent in more than one header")
            out[key] = parsed
    return out


def parse_event_report(body: str | bytes) -> list[dict[str, Any]]:
    """A CMCD v2 event-mode POST body: one dictionary per line (blank lines ignored)."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise CmcdError(f"CMCD event report is not UTF-8: {exc}") from exc
    reports = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            reports.append(parse_dictionary(line))
        except CmcdError as exc:
            raise CmcdError(f"line {number}: {exc}") from exc
    if not reports:
        raise CmcdError("empty CMCD event report")
    return reports


# ---------------------------------------------------------------------------------------------------------
# Mapping to PlaybackEvent dicts
# ---------------------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        members = http_sfv.InnerList()
        for item in value:
            entry = http_sfv.Item(Decimal(str(item.value)) if isinstance(item.value, float) else item.value)
            entry.params.update(item.params)
            members.append(entry)
        if isinstance(value, ItemList):
            members.params.update(value.params)
        return str(members)
    if isinstance(value, bytes):
        return str(http_sfv.Item(value))
    return str(value)


def _first_int(value: Any) -> int | None:
    """An integer key; for a v2 inner list, the video entry (``;v``), else the first one."""
    if value is None:
        return None
    if isinstance(value, list):
        if not value:
            return None
        video = [item.value for item in value if item.params.get("v") or item.params.get("av")]
        return int(video[0] if video else value[0].value)
    return int(value)


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item.value) for item in value]
    return [str(value)]


def _event(
    data: Mapping[str, Any],
    *,
    event_type: str,
    source: str,
    seq: int,
    received_ts: datetime,
    session_id: str | None,
    video_id: str | None,
    consumed: set[str],
) -> dict[str, Any]:
    sid = data.get("sid") or session_id
    if not sid:
        raise CmcdError("no session id: the report has no sid and none was given")
    received_ms = to_ms(received_ts)
    client_ts = from_ms(int(data["ts"])) if "ts" in data else from_ms(received_ms)
    pt_ms = _first_int(data.get("pt"))
    used = consumed | {"sid", "ts", "pt", "sn"}
    return {
        "session_id": str(sid),
        "seq": seq,
        "event_type": event_type,
        "client_ts": client_ts,
        "received_ts": from_ms(received_ms),
        "video_id": video_id,
        "user_id": None,
        "profile_id": None,
        "device_class": None,
        "rendition": None,
        "bitrate_kbps": None,
        "video_width": None,
        "video_height": None,
        "player_width": None,
        "player_height": None,
        "playhead_s": None if pt_ms is None else pt_ms / 1000,
        "error_code": None,
        "fatal": False,
        "bytes": None,
        "source": source,
        "extras": {key: _text(value) for key, value in data.items() if key not in used},
    }


def v1_event(
    data: Mapping[str, Any],
    *,
    seq: int,
    received_ts: datetime,
    video_id: str,
    session_id: str | None = None,
    nbytes: int | None = None,
) -> dict[str, Any]:
    """The PlaybackEvent of one CMCD v1 request (``data`` from ``parse_query`` / ``parse_headers``).

    ``video_id`` is the video the request served and ``nbytes`` the size of the response; the request's
    ``cid`` is kept in extras only (see the module docstring). ``seq`` is the collector's counter for the
    session; ``session_id`` is used when the request carries no ``sid``."""
    event = _event(
        data,
        event_type="CMCD_REQUEST",
        source="CMCD_V1",
        seq=seq,
        received_ts=received_ts,
        session_id=session_id,
        video_id=video_id,
        consumed={"br"},
    )
    event["bitrate_kbps"] = _first_int(data.get("br"))
    event["bytes"] = nbytes
    return event


_PLAYING_AFTER: Final = {"s": "FIRST_FRAME", "r": "STALL_END", "k": "SEEK_END", "a": "PLAY"}
_STATE_EVENTS: Final = {
    "s": "PLAY_REQUESTED",
    "r": "STALL_START",
    "k": "SEEK_START",
    "a": "PAUSE",
    "w": "PAUSE",
    "e": "END",
    "q": "END",
    "f": "ERROR",
    "d": "CMCD_EVENT",
}


def v2_event(
    data: Mapping[str, Any],
    *,
    received_ts: datetime,
    seq: int | None = None,
    session_id: str | None = None,
    previous_sta: str | None = None,
) -> dict[str, Any]:
    """The PlaybackEvent of one CMCD v2 event-mode report (mapping table in the module docstring).

    ``seq`` is used when the report has no ``sn``; ``previous_sta`` is the player state before this report
    (from an earlier ``ps`` report), used to name a change to ``p``."""
    if "e" not in data:
        raise CmcdError("a CMCD event report needs the e key")
    kind = str(data["e"])
    sta = str(data["sta"]) if "sta" in data else None
    if "sn" in data:
        seq = int(data["sn"])
    if seq is None:
        raise CmcdError("no sequence number: the report has no sn and none was given")
    event_type = "CMCD_EVENT"
    consumed: set[str] = {"cid"}
    fatal = False
    if kind == "ps":
        if sta is None:
            raise CmcdError("a play-state report (e=ps) needs the sta key")
        if sta == "p":
            event_type = _PLAYING_AFTER.get(previous_sta or "", "CMCD_EVENT")
        else:
            event_type = _STATE_EVENTS.get(sta, "CMCD_EVENT")
        fatal = sta == "f"
    elif kind == "e":
        event_type = "ERROR"
        fatal = sta == "f"
    elif kind == "t":
        event_type = "HEARTBEAT"
    elif kind == "bc":
        event_type = "RENDITION_CHANGE"
    elif kind == "rr":
        event_type = "CMCD_REQUEST"
    event = _event(
        data,
        event_type=event_type,
        source="CMCD_V2",
        seq=seq,
        received_ts=received_ts,
        session_id=session_id,
        video_id=data.get("cid"),
        consumed=consumed,
    )
    bitrate = data.get("pb") if event_type == "HEARTBEAT" and "pb" in data else data.get("br")
    event["bitrate_kbps"] = _first_int(bitrate)
    if event_type == "ERROR":
        codes = _strings(data.get("ec"))
        event["error_code"] = ",".join(codes) if codes else None
        event["fatal"] = fatal
        event["extras"].pop("ec", None)
    return event


def v2_events(
    reports: Iterable[Mapping[str, Any]],
    *,
    received_ts: datetime,
    session_id: str | None = None,
    previous_sta: str | None = None,
    first_seq: int | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Map a batch of v2 reports in ``sn`` order, carrying the player state from one ``ps`` report to the
    next. Returns the events and the last known state (for the caller to pass with the next batch)."""
    ordered = sorted(enumerate(reports), key=lambda p: (int(p[1]["sn"]) if "sn" in p[1] else p[0], p[0]))
    events = []
    state = previous_sta
    for position, (_, report) in enumerate(ordered):
        seq = None if first_seq is None else first_seq + position
        events.append(v2_event(report, received_ts=received_ts, seq=seq, session_id=session_id, previous_sta=state))
        if report.get("e") == "ps" and "sta" in report:
            state = str(report["sta"])
    return events, state
