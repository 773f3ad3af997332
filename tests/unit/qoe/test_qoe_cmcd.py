"""CMCD v1 (query / headers, as hls.js and dash.js send them) and v2 event-mode reports: parsing, the
mapping to PlaybackEvents (valid against the Avro schema), the view metrics they give, malformed input."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema
from fastavro.validation import validate

from common.qoe import cmcd, views
from common.qoe.cmcd import CmcdError, Item, Token
from common.qoe.views import from_ms

SCHEMA = parse_schema(json.loads((Path(__file__).parents[3] / "schemas" / "PlaybackEvent.avsc").read_text()))
NOW = from_ms(1_767_225_700_000)
SID = "6e2fb550-c457-11e9-bb97-0800200c9a66"

# hls.js (v1): the CMCD query argument it appends to a segment URL.
HLSJS_URL = (
    "https://cdn.example.com/v/720p/seg_12.m4s?token=abc&CMCD=br%3D3200%2Cbs%2Cd%3D4004%2Cmtp%3D25400%2Cot%3Dv"
    "%2Csf%3Dh%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Csu"
)
# dash.js (v1): every key it can send, sorted, with an encoded next-object path inside a string.
DASHJS_QUERY = (
    "CMCD=bl%3D21300%2Cbr%3D3200%2Cbs%2Ccid%3D%22faec5fc2-ac30-11ea-bb37-0242ac130002%22%2Cd%3D4004%2Cdl%3D18500"
    "%2Cmtp%3D48100%2Cnor%3D%22..%252F300kbps%252Ftrack.m4v%22%2Cnrr%3D%2212323-48763%22%2Cot%3Dv%2Cpr%3D1.08"
    "%2Crtp%3D12000%2Csf%3Dd%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Cst%3Dv%2Csu%2Ctb%3D6000"
)
HEADERS = {
    "Accept": "*/*",
    "CMCD-Request": 'bl=21300,dl=18500,mtp=48100,nor="..%2F300kbps%2Ftrack.m4v",nrr="12323-48763",su',
    "CMCD-Object": "br=3200,d=4004,ot=v,tb=6000",
    "cmcd-status": "bs,rtp=12000",
    "CMCD-Session": (
        'cid="faec5fc2-ac30-11ea-bb37-0242ac130002",pr=1.08,sf=d,sid="6e2fb550-c457-11e9-bb97-0800200c9a66",st=v'
    ),
}


def valid(event: dict[str, Any]) -> bool:
    return bool(validate(event, SCHEMA, raise_errors=True))


def test_hlsjs_query_argument() -> None:
    data = cmcd.parse_query(HLSJS_URL)
    assert data == {
        "br": 3200,
        "bs": True,
        "d": 4004,
        "mtp": 25400,
        "ot": "v",
        "sf": "h",
        "sid": SID,
        "st": "v",
        "su": True,
    }
    assert isinstance(data["ot"], Token) and not isinstance(data["sid"], Token)
    event = cmcd.v1_event(data, seq=41, received_ts=NOW, video_id="served-video", nbytes=1_601_234)
    assert valid(event)
    assert (event["event_type"], event["source"], event["session_id"], event["seq"]) == (
        "CMCD_REQUEST",
        "CMCD_V1",
        SID,
        41,
    )
    assert (event["bitrate_kbps"], event["bytes"], event["video_id"], event["client_ts"]) == (
        3200,
        1_601_234,
        "served-video",
        NOW,
    )
    assert event["extras"] == {
        "bs": "true",
        "d": "4004",
        "mtp": "25400",
        "ot": "v",
        "sf": "h",
        "st": "v",
        "su": "true",
    }


def test_dashjs_query_and_the_same_data_as_headers() -> None:
    from_query = cmcd.parse_query("?" + DASHJS_QUERY)
    assert cmcd.parse_query(DASHJS_QUERY) == from_query
    assert cmcd.parse_query("/v/seg.m4s?" + DASHJS_QUERY + "#t=1") == from_query
    assert from_query["pr"] == 1.08 and from_query["nor"] == "..%2F300kbps%2Ftrack.m4v"
    assert from_query["cid"] == "faec5fc2-ac30-11ea-bb37-0242ac130002"
    from_headers = cmcd.parse_headers(HEADERS)
    assert from_headers == from_query
    assert cmcd.parse_headers(list(HEADERS.items())) == from_query
    event = cmcd.v1_event(from_headers, seq=0, received_ts=NOW, video_id="served-video")
    assert valid(event)
    assert (event["video_id"], event["extras"]["cid"]) == ("served-video", "faec5fc2-ac30-11ea-bb37-0242ac130002")
    assert event["extras"]["pr"] == "1.08" and event["extras"]["nrr"] == "12323-48763"
    assert cmcd.parse_headers({"Accept": "*/*"}) == {}


def test_unknown_and_custom_keys_are_kept_as_text() -> None:
    data = cmcd.parse_dictionary('br=800,com.example-abr="bola",xyz=?0,zz=1.5,yy=(1 2);p')
    event = cmcd.v1_event(data, seq=1, received_ts=NOW, video_id="v", session_id="fallback")
    assert event["session_id"] == "fallback"
    assert event["extras"] == {"com.example-abr": "bola", "xyz": "false", "zz": "1.5", "yy": "(1 2);p"}
    assert valid(event)


def test_v1_requests_belong_to_the_served_video_and_keep_the_players_cid_in_extras() -> None:
    """dash.js and Shaka configured with cid "holdout" send it on every request: the bytes are still the
    served video's, and "holdout" is kept as the integrator's label."""
    query = cmcd.parse_query("CMCD=br%3D800%2Ccid%3D%22holdout%22%2Cot%3Dv%2Csid%3D%22s-1%22")
    headers = cmcd.parse_headers({"CMCD-Object": "br=800,ot=v", "CMCD-Session": 'cid="holdout",sid="s-1"'})
    assert query == headers
    for data in (query, headers):
        event = cmcd.v1_event(data, seq=7, received_ts=NOW, video_id="video-x", nbytes=1000)
        assert valid(event)
        assert (event["video_id"], event["bytes"], event["extras"]) == ("video-x", 1000, {"cid": "holdout", "ot": "v"})
    # Without a cid there is nothing to keep; the video is still the served one.
    event = cmcd.v1_event(cmcd.parse_dictionary('br=800,sid="s-1"'), seq=8, received_ts=NOW, video_id="video-x")
    assert (event["video_id"], event["extras"]) == ("video-x", {})


def test_v2_reports_take_the_video_from_cid() -> None:
    """Event-mode reports describe no request of ours: cid is the only video there is, so it is the video
    (and not repeated in extras)."""
    [with_cid, without] = cmcd.parse_event_report('e=t,cid="video-a",sid="s",sn=0\ne=t,sid="s",sn=1')
    event = cmcd.v2_event(with_cid, received_ts=NOW)
    assert (event["video_id"], "cid" in event["extras"]) == ("video-a", False)
    assert cmcd.v2_event(without, received_ts=NOW)["video_id"] is None


REPORT = "\n".join(
    [
        f'cid="video-a",e=ps,sid="{SID}",sn=0,sta=s,ts=1767225600000,v=2',
        f'e=ps,msd=1500,sid="{SID}",sn=1,sta=p,ts=1767225601500,v=2',
        f'bl=(21300;v 400;a),br=(3200;v 128;a),e=t,mtp=(25400),pb=(3200;v 128;a),pt=4500,sid="{SID}",sn=2,'
        "sta=p,ts=1767225606000,v=2",
        f'e=ps,sid="{SID}",sn=3,sta=r,ts=1767225610000,v=2',
        f'bsd=(2000),e=ps,sid="{SID}",sn=4,sta=p,ts=1767225612000,v=2',
        f'e=ps,sid="{SID}",sn=5,sta=k,ts=1767225615000,v=2',
        f'e=ps,sid="{SID}",sn=6,sta=p,ts=1767225616000,v=2',
        f'e=ps,sid="{SID}",sn=7,sta=a,ts=1767225620000,v=2',
        f'e=ps,sid="{SID}",sn=8,sta=p,ts=1767225630000,v=2',
        f'e=e,ec=("HLS_FRAG_LOAD_TIMEOUT"),sid="{SID}",sn=9,ts=1767225632000,v=2',
        f'br=(4500;v),e=bc,sid="{SID}",sn=10,ts=1767225633000,v=2',
        f'bsa=(1),bsda=(2000),dfa=12,e=t,pb=(4500;v),pt=32000,sid="{SID}",sn=11,sta=p,ts=1767225636000,v=2',
        f'e=ps,sid="{SID}",sn=12,sta=q,ts=1767225640000,v=2',
    ]
)


def test_v2_event_report_maps_play_states_and_gives_view_metrics() -> None:
    reports = cmcd.parse_event_report(REPORT + "\n")
    assert reports[2]["br"] == [Item(3200, {"v": True}), Item(128, {"a": True})]
    events, last = cmcd.v2_events(reports, received_ts=NOW)
    assert last == "q"
    assert [e["event_type"] for e in events] == [
        "PLAY_REQUESTED",
        "FIRST_FRAME",
        "HEARTBEAT",
        "STALL_START",
        "STALL_END",
        "SEEK_START",
        "SEEK_END",
        "PAUSE",
        "PLAY",
        "ERROR",
        "RENDITION_CHANGE",
        "HEARTBEAT",
        "END",
    ]
    for event in events:
        assert valid(event)
        assert event["source"] == "CMCD_V2" and event["session_id"] == SID
    assert [e["seq"] for e in events] == list(range(13))
    heartbeat = events[2]
    assert (heartbeat["playhead_s"], heartbeat["bitrate_kbps"]) == (4.5, 3200)
    assert heartbeat["extras"]["bl"] == "(21300;v 400;a)" and heartbeat["extras"]["mtp"] == "(25400)"
    assert events[1]["extras"]["msd"] == "1500"
    error = events[9]
    assert (error["error_code"], error["fatal"]) == ("HLS_FRAG_LOAD_TIMEOUT", False)
    assert events[12]["extras"]["sta"] == "q"

    state = views.new_session(SID)
    for event in reversed(events):  # arrival order does not matter
        views.apply(state, event, reorder_window_s=None)
    [m] = views.drain(state).views
    assert (m.video_id, m.close_reason, m.view_id) == ("video-a", "end", f"{SID}/CMCD_V2/0")
    assert m.video_startup_time_ms == 1500
    assert (m.rebuffer_count, m.rebuffer_ms) == (1, 2000)
    assert (m.seek_ms, m.paused_ms) == (1000, 10_000)
    assert m.watch_time_ms == 40_000 - 10_000
    assert m.non_fatal_errors == 1 and not m.playback_failure and not m.exit_before_video_start
    # The bitrate is known from the first t report (6 s): 3200 kbps played until the bc report at 33 s.
    assert m.bitrate_kbps_ms == 3200 * (33_000 - 6000 - 2000 - 1000 - 10_000) + 4500 * 7000
    assert m.played_ms == 40_000 - 1500 - 2000 - 1000 - 10_000
    assert m.watched_position_s == 32.0


def test_v2_fatal_error_quit_before_start_and_unknown_previous_state() -> None:
    fatal = cmcd.v2_event(
        cmcd.parse_dictionary('e=ps,ec=("MEDIA_ERR_DECODE"),sta=f,sn=4,ts=1767225600000'),
        received_ts=NOW,
        session_id="s-42",
    )
    assert (fatal["event_type"], fatal["fatal"], fatal["error_code"], fatal["seq"]) == (
        "ERROR",
        True,
        "MEDIA_ERR_DECODE",
        4,
    )
    assert fatal["session_id"] == "s-42" and valid(fatal)
    error_in_fatal_state = cmcd.v2_event(
        cmcd.parse_dictionary('e=e,ec=("X" "Y"),sta=f,sn=1'), received_ts=NOW, session_id="s"
    )
    assert (error_in_fatal_state["fatal"], error_in_fatal_state["error_code"]) == (True, "X,Y")
    assert error_in_fatal_state["client_ts"] == NOW  # no ts: the receive time
    playing = cmcd.v2_event(cmcd.parse_dictionary('e=ps,sta=p,sid="s",sn=9'), received_ts=NOW)
    assert playing["event_type"] == "CMCD_EVENT" and playing["extras"]["sta"] == "p"
    waiting = cmcd.v2_event(cmcd.parse_dictionary('e=ps,sta=w,sid="s"'), received_ts=NOW, seq=3)
    assert (waiting["event_type"], waiting["seq"]) == ("PAUSE", 3)
    muted = cmcd.v2_event(cmcd.parse_dictionary('e=m,sid="s",sn=2'), received_ts=NOW)
    assert muted["event_type"] == "CMCD_EVENT"

    events, _ = cmcd.v2_events(
        cmcd.parse_event_report('e=ps,sid="q",sn=0,sta=s,ts=1000,cid="v"\ne=ps,sid="q",sn=1,sta=q,ts=4000\n'),
        received_ts=NOW,
    )
    state = views.new_session("q")
    for event in events:
        views.apply(state, event)
    [m] = views.drain(state).views
    assert m.exit_before_video_start and m.watch_time_ms == 3000


def test_v2_reports_without_sn_take_the_callers_counter_in_batch_order() -> None:
    reports = cmcd.parse_event_report('e=ps,sid="s",sta=s\ne=ps,sid="s",sta=p\n')
    events, last = cmcd.v2_events(reports, received_ts=NOW, first_seq=10)
    assert [(e["seq"], e["event_type"]) for e in events] == [(10, "PLAY_REQUESTED"), (11, "FIRST_FRAME")]
    assert last == "p"
    events, _ = cmcd.v2_events(cmcd.parse_event_report('e=ps,sid="s",sta=p,sn=3'), received_ts=NOW, previous_sta="r")
    assert events[0]["event_type"] == "STALL_END"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("br=3200,", "not an RFC 8941 dictionary"),
        ("br=3200,,d=4", "not an RFC 8941 dictionary"),
        ("BR=3200", "not an RFC 8941 dictionary"),
        ('sid="unterminated', "not an RFC 8941 dictionary"),
        ("br=32 00", "not an RFC 8941 dictionary"),
        ("br=3200;", "not an RFC 8941 dictionary"),
        ('br="3200"', "'br' must be an integer or an inner list of integers"),
        ("br=32.5", "'br' must be an integer"),
        ("bs=5", "'bs' must be a boolean"),
        ('ot="v"', "'ot' must be a token"),
        ("sid=abc", "'sid' must be a string"),
        ("cid=?1", "'cid' must be a string"),
        ("d=(1 2)", "'d' must be an integer"),
        ('pr="fast"', "'pr' must be a number"),
        ('ec=("ok" 3)', "'ec' must be a string or an inner list of strings"),
        ('sid="caf\u00e9"', "not an RFC 8941 dictionary"),
        ("x" * 20_000, "too long"),
    ],
)
def test_malformed_dictionaries_are_refused(text: str, message: str) -> None:
    with pytest.raises(CmcdError, match=message):
        cmcd.parse_dictionary(text)


def test_malformed_queries_headers_and_reports_are_refused() -> None:
    with pytest.raises(CmcdError, match="no CMCD query argument"):
        cmcd.parse_query("https://cdn.example.com/seg.m4s?token=abc")
    with pytest.raises(CmcdError, match="more than one"):
        cmcd.parse_query("CMCD=br%3D1&CMCD=br%3D2")
    with pytest.raises(CmcdError, match="not an RFC 8941"):
        cmcd.parse_query("CMCD=br%3D3200%2C")
    with pytest.raises(CmcdError, match="more than one header"):
        cmcd.parse_headers({"CMCD-Object": "br=3200", "CMCD-Request": "br=3300"})
    with pytest.raises(CmcdError, match="line 2"):
        cmcd.parse_event_report("e=t,sn=1\ne=t,sn=2,\n")
    with pytest.raises(CmcdError, match="empty"):
        cmcd.parse_event_report("\n\n")
    with pytest.raises(CmcdError, match="UTF-8"):
        cmcd.parse_event_report(b'e=t,sid="\xff"')
    with pytest.raises(CmcdError, match="needs the e key"):
        cmcd.v2_event(cmcd.parse_dictionary('sid="s",sn=1'), received_ts=NOW)
    with pytest.raises(CmcdError, match="needs the sta key"):
        cmcd.v2_event(cmcd.parse_dictionary('e=ps,sid="s",sn=1'), received_ts=NOW)
    with pytest.raises(CmcdError, match="no sequence number"):
        cmcd.v2_event(cmcd.parse_dictionary('e=t,sid="s"'), received_ts=NOW)
    with pytest.raises(CmcdError, match="no session id"):
        cmcd.v1_event(cmcd.parse_dictionary("br=3200"), seq=0, received_ts=NOW, video_id="v")
    assert issubclass(CmcdError, ValueError)


def test_empty_input_is_no_data() -> None:
    assert cmcd.parse_dictionary("") == {} and cmcd.parse_dictionary(b"  ") == {}
    assert cmcd.parse_query("CMCD=") == {}


def test_timestamps_are_timezone_aware() -> None:
    event = cmcd.v2_event(cmcd.parse_dictionary('e=t,sid="s",sn=0,ts=1767225600123'), received_ts=NOW)
    assert isinstance(event["client_ts"], datetime) and event["client_ts"].tzinfo is not None
    assert views.to_ms(event["client_ts"]) == 1_767_225_600_123
