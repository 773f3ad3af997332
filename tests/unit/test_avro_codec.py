"""Unit tests of common/avro.py: pinned bytes, refused payloads, schema evolution, bad input, the Confluent
wire format against an in-process fake registry, and the Faust codec.

Run: ``.venv/bin/pytest tests/unit/test_avro_codec.py -q`` (no servers needed).
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import fastavro
import faust
import pytest
from fastavro.schema import fingerprint
from fastavro.utils import generate_many
from faust.serializers import Registry
from faust.serializers import codecs as faust_codecs

from common.avro import (
    SCHEMA_DIR,
    AvroCodec,
    FaustAvroCodec,
    SchemaRegistryClient,
    SchemaRegistryError,
    SchemaValidationError,
    SchemaVersion,
    UndecodableMessage,
    default_codec,
    known_versions,
    load_schema,
    record_names,
    register_faust_codec,
    schema_version,
    snapshot_schema,
)

T = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

VIDEO_UPLOADED: dict[str, Any] = {
    "video_id": "11111111-2222-3333-4444-555555555555",
    "owner_id": "u1",
    "source_bucket": "uploads",
    "source_key": "u1/v.mp4",
    "size_bytes": 1234567,
    "content_type": "video/mp4",
    "original_filename": "v.mp4",
    "title": "Hi",
    "thumbnail_time_s": 2.5,
    "uploaded_at": T,
    "trace_id": None,
}
VIDEO_STATUS_CHANGED: dict[str, Any] = {
    "video_id": "v1",
    "status": "FAILED",
    "reason": "bad",
    "changed_at": T,
    "progress": 0.5,
}
TRANSCODE_REQUESTED: dict[str, Any] = {
    "job_id": "v1/video/0/0",
    "video_id": "v1",
    "kind": "VIDEO",
    "renditions": [
        {
            "name": "720p",
            "codec": "H264",
            "bitrate_bps": 4_500_000,
            "width": 1280,
            "height": 720,
            "fps_num": 25,
            "fps_den": 1,
            "buffer_size_bits": 9_000_000,
            "segment_frames": 100,
            "timescale": 12800,
            "preset": "veryfast",
            "crf": 23,
        },
    ],
    "chunk_index": 0,
    "chunk_count": 3,
    "first_segment": 0,
    "segment_count": 2,
    "is_last": False,
    "start": {"num": 0, "den": 1},
    "duration": {"num": 8, "den": 1},
    "segment_duration": {"num": 4, "den": 1},
    "source_bucket": "uploads",
    "source_key": "u1/v.mp4",
    "source_demuxer": "mov",
    "requested_at": T,
}
SEGMENT: dict[str, Any] = {
    "number": 0,
    "start_ticks": 0,
    "duration_ticks": 51200,
    "start_s": 0.0,
    "duration_s": 4.0,
    "size_bytes": 9000,
    "key": "s0.m4s",
    "keyframe_offset": 0,
    "keyframe_size": 4000,
}
SEGMENT_READY: dict[str, Any] = {
    "video_id": "v1",
    "job_id": "v1/video/0/0",
    "rendition": "720p",
    "chunk_index": 0,
    "init_key": "init.mp4",
    "init_sha256": "0" * 64,
    "codecs": "avc1.64001f",
    "timescale": 12800,
    "segments": [SEGMENT],
    "produced_at": T,
}
PLAYBACK_EVENT: dict[str, Any] = {
    "session_id": "s1",
    "seq": 1,
    "event_type": "FIRST_FRAME",
    "client_ts": T,
    "received_ts": T,
    "source": "SDK",
}

# The current fingerprint of every record. A change here means messages written before it can only be read
# if the old version was kept: run `python -m common.avro snapshot <Record>` *before* editing the .avsc,
# then update the pin.
CURRENT_FINGERPRINTS = {
    "CommentPosted": "72fd32b4065d3be4",
    "CommentRemoved": "97ccf5faee3ce478",
    "DeadLetter": "8e526eeb6e265757",
    "PlaybackEvent": "8106a18f4e7938d8",
    "PlaybackEventBatch": "8ec745c97e2bac03",
    "RatingSet": "a97ce7b2a25cd13f",
    "SegmentReady": "ea09e872c5b6bf2d",
    "TranscodeRequested": "7a56011bd1ffa2d6",
    "VideoPrivacyChanged": "58b7e7d279990f21",
    "VideoStatusChanged": "d199a357f45b6e2b",
    "VideoUploaded": "0db487bf62feaa2b",
    "ViewRecorded": "a274fb57f7f91559",
}


@pytest.fixture
def codec() -> AvroCodec:
    return AvroCodec()


def without(value: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k != key}


def given_part(decoded: Any, given: Any) -> Any:
    """The part of a decoded value that was given when encoding (nested records included)."""
    if isinstance(given, dict):
        return {key: given_part(decoded[key], item) for key, item in given.items()}
    if isinstance(given, list):
        return [given_part(d, g) for d, g in zip(decoded, given, strict=True)]
    return decoded


def frame(version: SchemaVersion, value: dict[str, Any]) -> bytes:
    """Single-object bytes written with any schema version, as an older (or newer) producer would."""
    body = io.BytesIO()
    fastavro.schemaless_writer(body, version.parsed, value)
    return b"\xc3\x01" + version.fingerprint + body.getvalue()


# --- exact bytes -----------------------------------------------------------------------------------


def test_video_uploaded_bytes_are_pinned(codec: AvroCodec) -> None:
    data = codec.encode("VideoUploaded", VIDEO_UPLOADED)
    assert data.hex() == (
        "c301"  # single-object marker
        "0db487bf62feaa2b"  # CRC-64-AVRO fingerprint of VideoUploaded, little-endian
        "4831313131313131312d323232322d333333332d343434342d353535353535353535353535"  # video_id: len 36
        "047531"  # owner_id "u1" (strings: zigzag varint length, then UTF-8)
        "0e75706c6f616473"  # source_bucket "uploads"
        "1075312f762e6d7034"  # source_key "u1/v.mp4"
        "8eda9601"  # size_bytes 1234567, zigzag varint
        "12766964656f2f6d7034"  # content_type "video/mp4"
        "0a762e6d7034"  # original_filename "v.mp4"
        "044869"  # title "Hi"
        "020000000000000440"  # thumbnail_time_s: union branch 1 (double), 2.5 little-endian
        "dc8cc3cf8465"  # uploaded_at: 1735787045678 ms
        "00"  # trace_id: union branch 0 (null)
    )
    assert codec.decode(data) == VIDEO_UPLOADED


def test_video_status_changed_bytes_are_pinned(codec: AvroCodec) -> None:
    data = codec.encode("VideoStatusChanged", VIDEO_STATUS_CHANGED)
    assert data.hex() == (
        "c301d199a357f45b6e2b"  # marker + fingerprint
        "047631"  # video_id "v1"
        "08"  # status: enum index 4 = FAILED
        "0206626164"  # reason: branch 1, "bad"
        "dc8cc3cf8465"  # changed_at
        "02000000000000e03f"  # progress: branch 1, 0.5
    )
    assert codec.decode(data) == VIDEO_STATUS_CHANGED


def test_fingerprints_follow_the_avro_spec() -> None:
    # Test vector from Apache Avro's share/test/data/schema-tests.txt: the Java implementation gives the
    # signed 64-bit value below for the schema "null"; single-object encoding writes it little-endian.
    assert bytes.fromhex(fingerprint('"null"', "CRC-64-AVRO")) == struct.pack("<q", 7195948357588979594)


def test_current_fingerprints_are_pinned() -> None:
    current = {name: schema_version(name).fingerprint.hex() for name in record_names()}
    assert current == CURRENT_FINGERPRINTS, (
        "a schema's canonical form changed: keep the old version with `python -m common.avro snapshot "
        "<Record>` (before editing) so messages already in Kafka still decode, then update this pin"
    )


def test_every_event_round_trips(codec: AvroCodec) -> None:
    events = {
        "TranscodeRequested": TRANSCODE_REQUESTED,
        "SegmentReady": SEGMENT_READY,
        "PlaybackEvent": PLAYBACK_EVENT,
        "PlaybackEventBatch": {"session_id": "s1", "events": [PLAYBACK_EVENT, {**PLAYBACK_EVENT, "seq": 2}]},
        "DeadLetter": {
            "original_topic": "video.uploaded",
            "partition": 3,
            "offset": 42,
            "key": b"v1",
            "payload": b"\x00garbage",
            "error": "boom",
            "error_type": "common.avro.UndecodableMessage",
            "failed_at": T,
            "agent": "probe_uploads",
        },
        "CommentPosted": {
            "comment_id": "c1",
            "video_id": "v1",
            "user_id": "u1",
            "body": "nice",
            "posted_at": T,
        },
        "CommentRemoved": {"comment_id": "c1", "video_id": "v1", "removed_by": "u1", "removed_at": T},
        "RatingSet": {"video_id": "v1", "user_id": "u1", "value": "LIKE", "rated_at": T, "profile_id": "p1"},
        "VideoPrivacyChanged": {"video_id": "v1", "privacy": "PRIVATE", "previous_privacy": "PUBLIC", "changed_at": T},
        "ViewRecorded": {
            "video_id": "v1",
            "session_id": "s1",
            "watched_s": 12.5,
            "position_s": 30.0,
            "viewed_at": T,
        },
    }
    for name, value in events.items():
        decoded = codec.decode(codec.encode(name, value), name)
        # Omitted optional fields come back with their defaults; everything given comes back as given.
        assert given_part(decoded, value) == value, name
    decoded = codec.decode(codec.encode("TranscodeRequested", TRANSCODE_REQUESTED))
    assert decoded["attempt"] == 1
    assert decoded["renditions"][0]["channels"] is None
    decoded = codec.decode(codec.encode("PlaybackEvent", PLAYBACK_EVENT))
    assert (decoded["fatal"], decoded["extras"], decoded["bitrate_kbps"]) == (False, {}, None)


# --- refused payloads ------------------------------------------------------------------------------


INVALID_PAYLOADS = [
    pytest.param(
        "VideoUploaded",
        without(VIDEO_UPLOADED, "title"),
        "field 'title' is missing, expected string",
        id="missing-field",
    ),
    pytest.param(
        "SegmentReady",
        {**SEGMENT_READY, "segments": [SEGMENT, without(SEGMENT, "size_bytes")]},
        "field 'segments[1].size_bytes' is missing, expected long",
        id="missing-nested-field",
    ),
    pytest.param(
        "VideoUploaded",
        {**VIDEO_UPLOADED, "size_bytes": "1.2 MB"},
        "field 'size_bytes' is '1.2 MB' (str), expected long",
        id="wrong-type",
    ),
    pytest.param(
        "VideoUploaded",
        {**VIDEO_UPLOADED, "thumbnail_time_s": "soon"},
        "field 'thumbnail_time_s' is 'soon' (str), expected double",
        id="wrong-type-in-nullable",
    ),
    pytest.param(
        "TranscodeRequested",
        {**TRANSCODE_REQUESTED, "chunk_index": 2**40},
        "field 'chunk_index' is 1099511627776 (int), expected int",
        id="int-out-of-range",
    ),
    pytest.param(
        "VideoStatusChanged",
        {**VIDEO_STATUS_CHANGED, "changed_at": "yesterday"},
        "field 'changed_at' is 'yesterday' (str), expected long (timestamp-millis)",
        id="wrong-type-timestamp",
    ),
    pytest.param(
        "VideoStatusChanged",
        {**VIDEO_STATUS_CHANGED, "status": "DONE"},
        "field 'status' is 'DONE' (str), expected one of UPLOADING, PROCESSING, PLAYABLE, READY, FAILED, DELETED",
        id="bad-enum-symbol",
    ),
    pytest.param(
        "TranscodeRequested",
        {**TRANSCODE_REQUESTED, "renditions": [{"name": "720p", "codec": "VP9", "bitrate_bps": 1}]},
        "field 'renditions[0].codec' is 'VP9' (str), expected one of H264, HEVC, AV1, AAC",
        id="bad-nested-enum-symbol",
    ),
    pytest.param(
        "VideoUploaded",
        {**VIDEO_UPLOADED, "title": None},
        "field 'title' is null, expected string",
        id="null-in-non-null",
    ),
    pytest.param(
        "TranscodeRequested",
        {**TRANSCODE_REQUESTED, "renditions": [{"name": None, "codec": "AAC", "bitrate_bps": 1}]},
        "field 'renditions[0].name' is null, expected string",
        id="null-in-non-null-nested",
    ),
    pytest.param(
        "PlaybackEvent",
        {**PLAYBACK_EVENT, "extras": {"bl": 1200}},
        "field \"extras['bl']\" is 1200 (int), expected string",
        id="wrong-map-value",
    ),
    pytest.param(
        "VideoUploaded",
        {**VIDEO_UPLOADED, "thumbnail_time": 3.0},
        "field 'thumbnail_time' is not in the schema (misspelt?)",
        id="unknown-field",
    ),
    pytest.param(
        "SegmentReady",
        {**SEGMENT_READY, "segments": [{**SEGMENT, "keyframe_ofset": 10}]},
        "field 'segments[0].keyframe_ofset' is not in the schema (misspelt?)",
        id="unknown-nested-field",
    ),
    pytest.param(
        "VideoStatusChanged",
        {**VIDEO_STATUS_CHANGED, "changed_at": datetime(2025, 1, 2, 3, 4, 5)},
        "field 'changed_at' is a naive datetime; give it a timezone (UTC)",
        id="naive-datetime",
    ),
    pytest.param("VideoStatusChanged", ["v1", "READY"], "needs a mapping, got list", id="not-a-mapping"),
]


@pytest.mark.parametrize(("record", "value", "message"), INVALID_PAYLOADS)
def test_invalid_payloads_are_refused(codec: AvroCodec, record: str, value: Any, message: str) -> None:
    with pytest.raises(SchemaValidationError, match=re.escape(f"invalid {record}: {message}")) as raised:
        codec.encode(record, value)
    assert isinstance(raised.value, ValueError)
    assert raised.value.record == record


def test_unknown_record_and_history_versions_cannot_be_encoded(codec: AvroCodec) -> None:
    with pytest.raises(ValueError, match="no schema 'VideoDeleted'.*current records: CommentPosted"):
        codec.encode("VideoDeleted", {})
    with pytest.raises(ValueError, match="bad schema name '../secrets'"):
        codec.encode("../secrets", {})
    with pytest.raises(ValueError, match="not history 'VideoStatusChanged.v1'"):
        codec.encode("VideoStatusChanged.v1", without(VIDEO_STATUS_CHANGED, "progress"))


# --- the fast encode paths ------------------------------------------------------------------------
# AvroCodec.encoder() gives a RecordEncoder whose fast paths (a compiled writer for flat records, fastavro without
# its raising validation) must write exactly the bytes of the full path, ``checked``, and refuse what it refuses.

FAST_CASES: list[tuple[str, dict[str, Any]]] = [
    ("PlaybackEvent", PLAYBACK_EVENT),
    (
        "PlaybackEvent",
        {
            **PLAYBACK_EVENT,
            "seq": 2**63 - 1,  # the long's bounds, and ints that need several varint bytes
            "client_ts": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the epoch
            "received_ts": datetime.fromisoformat("2025-06-01T12:00:00.123456+02:00"),  # another offset
            "video_id": "ü" * 40,  # 80 bytes of UTF-8: a two-byte length
            "user_id": "",
            "device_class": "tv",
            "rendition": "1080p",
            "bitrate_kbps": 2**31 - 1,
            "video_width": -(2**31),
            "video_height": 64,
            "player_width": 0,
            "player_height": 63,
            "playhead_s": float("nan"),
            "error_code": "🎬" * 20,
            "fatal": True,
            "bytes": -(2**63),
            "source": "CMCD_V1",
            "extras": {"bl": "1200", "": "", "mtp": "x" * 200},
        },
    ),
    ("PlaybackEvent", {**PLAYBACK_EVENT, "client_ts": 1_764_000_000_000, "playhead_s": 12.0, "extras": {}}),
    ("VideoStatusChanged", VIDEO_STATUS_CHANGED),
    ("VideoUploaded", VIDEO_UPLOADED),
    ("VideoUploaded", {**VIDEO_UPLOADED, "size_bytes": 0, "thumbnail_time_s": float("inf")}),
]
# Values the compiled writer declines (not exactly the schema's types) but fastavro accepts: same bytes.
COERCED_CASES: list[tuple[str, Any]] = [
    ("PlaybackEvent", {**PLAYBACK_EVENT, "playhead_s": 12}),  # an int for a double
    ("VideoUploaded", {**VIDEO_UPLOADED, "thumbnail_time_s": 3}),
    ("PlaybackEvent", OrderedDict(PLAYBACK_EVENT)),  # a mapping that is not a dict
    ("PlaybackEvent", {**PLAYBACK_EVENT, "__faust": {"ns": "x"}}),  # a Faust model's metadata key
]


@pytest.mark.parametrize("record", record_names())
def test_the_fast_paths_write_the_bytes_of_the_checked_path(codec: AvroCodec, record: str) -> None:
    encoder = codec.encoder(record)
    random_values = list(generate_many(schema_version(record).parsed, 300))
    given = [value for name, value in FAST_CASES + COERCED_CASES if name == record]
    for value in random_values + given:
        assert encoder(value) == encoder.checked(value), value


def test_flat_records_take_the_compiled_writer(codec: AvroCodec, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = codec.encoder("PlaybackEvent")
    cases = [value for name, value in FAST_CASES if name == "PlaybackEvent"]
    expected = [encoder.checked(value) for value in cases]

    def not_called(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("fastavro was called for a value the compiled writer takes")

    monkeypatch.setattr("common.avro.validate", not_called)
    monkeypatch.setattr(fastavro, "schemaless_writer", not_called)
    assert [encoder(value) for value in cases] == expected


@pytest.mark.parametrize(
    "value",
    [
        {**PLAYBACK_EVENT, "seq": True},  # a bool is not a long to Avro
        {**PLAYBACK_EVENT, "seq": 2**63},
        {**PLAYBACK_EVENT, "bitrate_kbps": 2**31},
        {**PLAYBACK_EVENT, "rendition": b"720p"},
        {**PLAYBACK_EVENT, "event_type": "EXPLODED"},
        {**PLAYBACK_EVENT, "client_ts": datetime(2025, 1, 2)},  # naive
        {**PLAYBACK_EVENT, "fatal": 1},
        {**PLAYBACK_EVENT, "extras": {"bl": 1200}},
        {**PLAYBACK_EVENT, "extras": {1: "x"}},
        {**PLAYBACK_EVENT, "misspelt": 1},
        {**PLAYBACK_EVENT, "video_id": "\ud800"},  # a lone surrogate cannot be UTF-8
        without(PLAYBACK_EVENT, "session_id"),
    ],
)
def test_the_fast_paths_refuse_what_the_checked_path_refuses(codec: AvroCodec, value: dict[str, Any]) -> None:
    encoder = codec.encoder("PlaybackEvent")
    with pytest.raises(Exception) as checked:
        encoder.checked(value)
    with pytest.raises(type(checked.value), match=re.escape(str(checked.value))):
        encoder(value)


def test_encoders_are_made_once_per_record_and_topic(registry: FakeRegistry) -> None:
    plain = AvroCodec()
    assert plain.encoder("PlaybackEvent", topic="a") is plain.encoder("PlaybackEvent", topic="b")  # no registry
    codec = AvroCodec(SchemaRegistryClient(registry.url))
    first = codec.encoder("PlaybackEvent", topic="playback.telemetry")
    assert codec.encoder("PlaybackEvent", topic="playback.telemetry") is first
    codec.encoder("PlaybackEvent", topic="other")
    assert first(PLAYBACK_EVENT) == codec.encode("PlaybackEvent", PLAYBACK_EVENT, topic="playback.telemetry")
    # One registration per subject, then cached.
    assert registry.subjects == {"playback.telemetry-value": [1], "other-value": [1]}


# --- evolution -------------------------------------------------------------------------------------

# A VideoStatusChanged written by v1 code (schemas/history/VideoStatusChanged.v1.avsc, before `progress`).
OLD_STATUS_V1 = bytes.fromhex("c301105f3a88546266ce0a762d6f6c640600dc8cc3cf8465")


def test_old_data_decodes_with_the_new_reader(codec: AvroCodec) -> None:
    old_value = {"video_id": "v-old", "status": "READY", "reason": None, "changed_at": T}
    assert frame(schema_version("VideoStatusChanged.v1"), old_value) == OLD_STATUS_V1
    assert codec.decode(OLD_STATUS_V1) == {**old_value, "progress": None}  # the new field's default
    assert codec.decode(OLD_STATUS_V1, "VideoStatusChanged") == {**old_value, "progress": None}


def test_new_data_decodes_with_the_old_reader(codec: AvroCodec) -> None:
    data = codec.encode("VideoStatusChanged", VIDEO_STATUS_CHANGED)
    assert codec.decode(data, "VideoStatusChanged.v1") == without(VIDEO_STATUS_CHANGED, "progress")


def _versions_by_record() -> dict[str, list[SchemaVersion]]:
    versions: dict[str, list[SchemaVersion]] = {}
    for version in known_versions().values():
        versions.setdefault(version.name, []).append(version)
    return versions


@pytest.mark.parametrize("record", sorted(_versions_by_record()))
def test_all_versions_of_a_record_read_each_other(codec: AvroCodec, record: str) -> None:
    """Full transitive compatibility: producers and consumers can be upgraded in any order."""
    random.seed(record)  # generated data differs per record but not per run
    versions = _versions_by_record()[record]
    for writer in versions:
        for value in generate_many(writer.parsed, 5):
            data = frame(writer, value)
            for reader in versions:
                decoded = codec.decode(data, reader.label)
                assert set(decoded) == {field["name"] for field in reader.parsed["fields"]}


def test_unknown_playback_event_type_reads_as_unknown() -> None:
    # A future writer with an event type this reader lacks: the enum default keeps the consumer going.
    future = json.loads((SCHEMA_DIR / "PlaybackEvent.avsc").read_text())
    future["fields"][2]["type"]["symbols"].append("AD_BREAK_START")
    value = {**PLAYBACK_EVENT, "event_type": "AD_BREAK_START", "extras": {}}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(future), value)
    body.seek(0)
    decoded = fastavro.schemaless_reader(body, fastavro.parse_schema(future), load_schema("PlaybackEvent"))
    assert isinstance(decoded, dict)
    assert decoded["event_type"] == "UNKNOWN"


@pytest.fixture
def schema_dir(tmp_path: Path) -> Path:
    """A private copy of schemas/ to evolve."""
    return Path(shutil.copytree(SCHEMA_DIR, tmp_path / "schemas"))


def test_snapshot_then_evolve_keeps_old_messages_readable(schema_dir: Path) -> None:
    before = AvroCodec(schema_dir=schema_dir)
    view = {"video_id": "v1", "session_id": "s1", "watched_s": 1.0, "position_s": 2.0, "viewed_at": T}
    old_message = before.encode("ViewRecorded", view)

    path = snapshot_schema("ViewRecorded", schema_dir)
    assert path == schema_dir / "history" / "ViewRecorded.v1.avsc"
    assert snapshot_schema("ViewRecorded", schema_dir) == path  # nothing changed since: no new version
    # Evolve, as the next release would (a copy, so no cached schema is stale): a new optional field.
    release = Path(shutil.copytree(schema_dir, schema_dir.parent / "next-release"))
    current = json.loads((release / "ViewRecorded.avsc").read_text())
    current["fields"].append({"name": "device_class", "type": ["null", "string"], "default": None})
    (release / "ViewRecorded.avsc").write_text(json.dumps(current))

    after = AvroCodec(schema_dir=release)
    assert after.decode(old_message)["device_class"] is None
    new_message = after.encode("ViewRecorded", {**after.decode(old_message), "device_class": "tv"})
    assert after.decode(new_message, "ViewRecorded.v1") == before.decode(old_message)


def test_snapshots_are_self_contained(schema_dir: Path) -> None:
    # PlaybackEventBatch names PlaybackEvent from its file; the snapshot must freeze today's PlaybackEvent.
    path = snapshot_schema("PlaybackEventBatch", schema_dir)
    events = json.loads(path.read_text())["fields"][1]["type"]
    assert events["items"]["name"] == "PlaybackEvent"
    assert events["items"]["fields"][0]["name"] == "session_id"
    assert (
        schema_version("PlaybackEventBatch.v1", schema_dir).fingerprint
        == schema_version("PlaybackEventBatch", schema_dir).fingerprint
    )


# --- undecodable input -----------------------------------------------------------------------------

GOOD = bytes.fromhex("c301d199a357f45b6e2b047631080206626164dc8cc3cf846502000000000000e03f")

UNDECODABLE = [
    pytest.param(b"", "not an Avro message: starts with nothing", id="empty"),
    pytest.param(b'{"video_id": "v1"}', "not an Avro message: starts with 7b227669", id="json"),
    pytest.param(b"\xc3\x01\xd1\x99", "truncated single-object header (4 bytes)", id="short-header"),
    pytest.param(b"\xc3\x01" + bytes(8) + b"\x02", "unknown schema fingerprint 0000000000000000", id="unknown-fp"),
    pytest.param(GOOD[:-4], "corrupt or truncated VideoStatusChanged body (EOFError", id="truncated-body"),
    pytest.param(GOOD[:10], "corrupt or truncated VideoStatusChanged body", id="header-only"),
    pytest.param(GOOD + b"\x00", "1 trailing bytes after a VideoStatusChanged body", id="trailing-bytes"),
    pytest.param(GOOD[:10] + b"\x04v1\x7f", "corrupt or truncated VideoStatusChanged body", id="bad-enum-index"),
    pytest.param(GOOD[:10] + b"\x01\xff", "corrupt or truncated VideoStatusChanged body", id="negative-len"),
    pytest.param(b"\x00\x00\x00\x00\x07\x02", "schema id 7) but no SCHEMA_REGISTRY_URL", id="confluent"),
    pytest.param(b"\x00\x00\x01", "truncated Confluent header (3 bytes)", id="short-confluent"),
    pytest.param("c301", "expected bytes, got str", id="not-bytes"),
]


@pytest.mark.parametrize(("data", "message"), UNDECODABLE)
def test_undecodable_input_is_refused(codec: AvroCodec, data: Any, message: str) -> None:
    assert codec.decode(GOOD) == VIDEO_STATUS_CHANGED  # the input is near a good one
    with pytest.raises(UndecodableMessage, match=re.escape(message)):
        codec.decode(data)


def test_a_message_of_another_record_is_refused(codec: AvroCodec) -> None:
    with pytest.raises(UndecodableMessage, match="message is a VideoStatusChanged, expected a VideoUploaded"):
        codec.decode(GOOD, "VideoUploaded")


# --- Confluent wire format, against a fake registry ------------------------------------------------


class FakeRegistry(ThreadingHTTPServer):
    """Just enough of the Confluent Schema Registry: register under a subject, fetch by id."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RegistryHandler)
        self.ids: dict[str, int] = {}  # schema text -> id
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Authorization
        self.refuse_subjects: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RegistryHandler(BaseHTTPRequestHandler):
    server: FakeRegistry

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path, self.headers.get("Authorization")))
        match = re.fullmatch(r"/subjects/([^/]+)/versions", self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if match is None:
            self._reply(404, {"error_code": 404, "message": "HTTP 404 Not Found"})
        elif match.group(1) in self.server.refuse_subjects:
            message = "Schema being registered is incompatible with an earlier schema"
            self._reply(409, {"error_code": 409, "message": message})
        else:
            schema_id = self.server.ids.setdefault(body["schema"], len(self.server.ids) + 1)
            self.server.subjects.setdefault(match.group(1), []).append(schema_id)
            self._reply(200, {"id": schema_id})

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path, self.headers.get("Authorization")))
        match = re.fullmatch(r"/schemas/ids/(\d+)", self.path)
        by_id = {schema_id: text for text, schema_id in self.server.ids.items()}
        if match is None or int(match.group(1)) not in by_id:
            self._reply(404, {"error_code": 40403, "message": "Schema not found"})
        else:
            self._reply(200, {"schema": by_id[int(match.group(1))]})


@pytest.fixture
def registry() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_confluent_round_trip(registry: FakeRegistry, codec: AvroCodec) -> None:
    producer = AvroCodec(SchemaRegistryClient(registry.url))
    data = producer.encode("VideoStatusChanged", VIDEO_STATUS_CHANGED, topic="video.lifecycle")
    assert data[:5] == b"\x00\x00\x00\x00\x01"  # magic byte, schema id 1 big-endian
    assert data[5:] == GOOD[10:]  # the same Avro body as single-object encoding
    assert registry.subjects == {"video.lifecycle-value": [1]}
    assert json.loads(next(iter(registry.ids))) == json.loads(schema_version("VideoStatusChanged").text)
    # The id is cached: a second message makes no request.
    producer.encode("VideoStatusChanged", VIDEO_STATUS_CHANGED, topic="video.lifecycle")
    assert [r[0] for r in registry.requests] == ["POST"]

    consumer = AvroCodec(SchemaRegistryClient(registry.url))  # a fresh process: fetches the schema by id
    assert consumer.decode(data) == VIDEO_STATUS_CHANGED
    assert consumer.decode(data, "VideoStatusChanged.v1") == without(VIDEO_STATUS_CHANGED, "progress")
    assert consumer.decode(data) == VIDEO_STATUS_CHANGED
    assert [r[:2] for r in registry.requests[1:]] == [("GET", "/schemas/ids/1")]
    # A registry-configured consumer still reads single-object messages (switch-over without a flag day).
    assert consumer.decode(GOOD) == VIDEO_STATUS_CHANGED
    with pytest.raises(UndecodableMessage, match="message is a VideoStatusChanged .registry id 1., expected"):
        consumer.decode(data, "VideoUploaded")


def test_confluent_errors(registry: FakeRegistry) -> None:
    codec = AvroCodec(SchemaRegistryClient(registry.url))
    with pytest.raises(ValueError, match="needs the topic name"):
        codec.encode("VideoStatusChanged", VIDEO_STATUS_CHANGED)
    # An id the registry never issued: the message is poison.
    with pytest.raises(UndecodableMessage, match="schema id 9 is unknown to the registry"):
        codec.decode(b"\x00\x00\x00\x00\x09" + GOOD[10:])
    # A refused schema is a registry error (fix the schema), not a bad message.
    registry.refuse_subjects.add("video.lifecycle-value")
    with pytest.raises(SchemaRegistryError, match="HTTP 409: Schema being registered is incompatible") as err:
        codec.encode("VideoStatusChanged", VIDEO_STATUS_CHANGED, topic="video.lifecycle")
    assert err.value.status == 409


def test_unreachable_registry_is_a_registry_error_not_a_poison_message() -> None:
    closed = FakeRegistry()
    url = closed.url
    closed.server_close()  # nothing listens on that port now
    codec = AvroCodec(SchemaRegistryClient(url, timeout_s=2))
    with pytest.raises(SchemaRegistryError, match="failed"):
        codec.encode("VideoStatusChanged", VIDEO_STATUS_CHANGED, topic="video.lifecycle")
    with pytest.raises(SchemaRegistryError, match="failed"):
        codec.decode(b"\x00\x00\x00\x00\x01" + GOOD[10:])


def test_registry_credentials_come_from_the_url(registry: FakeRegistry) -> None:
    url = registry.url.replace("http://", "http://key:s%40cret@")
    client = SchemaRegistryClient(url)
    assert "key" not in client.url
    assert client.register("t-value", schema_version("RatingSet").text) == 1
    assert registry.requests[0][2] == "Basic a2V5OnNAY3JldA=="  # base64("key:s@cret")
    with pytest.raises(ValueError, match="must be http"):
        SchemaRegistryClient("file:///etc/passwd")


# --- Faust -----------------------------------------------------------------------------------------


class StatusChange(faust.Record):
    video_id: str
    status: str
    changed_at: datetime
    reason: str | None = None
    progress: float | None = None


def test_faust_codec_round_trip(codec: AvroCodec) -> None:
    faust_codec = FaustAvroCodec("VideoStatusChanged", codec=codec)
    data = faust_codec.dumps(VIDEO_STATUS_CHANGED)
    assert data == GOOD
    assert faust_codec.loads(data) == VIDEO_STATUS_CHANGED
    # Models too, as Faust hands them over (to_representation() carries "__faust" metadata).
    record = StatusChange(**VIDEO_STATUS_CHANGED)
    assert faust_codec.dumps(record) == GOOD
    assert faust_codec.dumps(record.to_representation()) == GOOD
    # Through Faust's own serializer registry, into the topic's value_type.
    serializers = Registry()
    assert serializers.dumps_value(StatusChange, record, serializer=faust_codec) == GOOD
    assert serializers.loads_value(StatusChange, GOOD, serializer=faust_codec) == record
    # Faust clones codecs when chaining; the clone keeps the record.
    assert faust_codec.clone().loads(GOOD) == VIDEO_STATUS_CHANGED


def test_faust_codec_refuses_bad_values_and_names(codec: AvroCodec) -> None:
    faust_codec = FaustAvroCodec("VideoStatusChanged", codec=codec)
    with pytest.raises(SchemaValidationError, match="field 'status' is 'DONE'"):
        faust_codec.dumps({**VIDEO_STATUS_CHANGED, "status": "DONE"})
    with pytest.raises(UndecodableMessage):
        faust_codec.loads(b"garbage")
    with pytest.raises(ValueError, match="no schema 'VideoStatus'"):
        FaustAvroCodec("VideoStatus")


def test_registered_faust_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEMA_REGISTRY_URL", raising=False)
    default_codec.cache_clear()  # built from this environment
    name = register_faust_codec("VideoStatusChanged")
    try:
        assert name == "avro:VideoStatusChanged"
        data = faust_codecs.dumps(name, VIDEO_STATUS_CHANGED)
        assert data == GOOD
        assert faust_codecs.loads(name, data) == VIDEO_STATUS_CHANGED
    finally:
        faust_codecs.codecs.pop(name, None)
        default_codec.cache_clear()
