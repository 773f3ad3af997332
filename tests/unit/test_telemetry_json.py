"""The collector's JSON reading (api/telemetry.py ``parse_json``): orjson first, the json module for whatever orjson
refuses, so a body gets the same answer as before orjson: the same documents, the same 400 for what is not JSON.

Run: ``.venv/bin/pytest tests/unit/test_telemetry_json.py -q`` (no servers needed).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api.errors import InvalidRequest
from api.telemetry import parse_batch, parse_json

T0 = 1_764_000_000_000


@pytest.mark.parametrize(
    "body",
    [
        b'{"session_id": "s", "events": [{"seq": 1, "type": "end", "ts": 1764000000000}]}',
        '{"name": "ü🎬"}'.encode(),
        '{"name": "ü"}'.encode("utf-16"),  # json detects UTF-16/32; orjson reads UTF-8 only
        '\ufeff{"a": 1}'.encode(),  # a UTF-8 byte-order mark
        b'{"playhead_s": NaN, "big": 123456789012345678901234567890}',  # beyond what orjson reads
        b"[1, 2.5, null, true]",
    ],
)
def test_documents_read_as_the_json_module_reads_them(body: bytes) -> None:
    # Compared as text: NaN is not equal to itself.
    assert json.dumps(parse_json(body)) == json.dumps(json.loads(body))


@pytest.mark.parametrize(
    ("body", "position"), [(b"{not json", 1), (b"", 0), (b'{"a": 1} x', 9), (b"\xff\xfe\xfa", None)]
)
def test_what_is_not_json_is_the_same_400(body: bytes, position: int | None) -> None:
    with pytest.raises(InvalidRequest, match="the body is not JSON") as raised:
        parse_json(body)
    assert raised.value.status == 400 and raised.value.detail == {"position": position}


def test_nan_still_reaches_the_field_check() -> None:
    document: Any = parse_json(
        b'{"session_id": "s", "events": [{"seq": 1, "type": "heartbeat", "ts": %d, "playhead_s": NaN}]}' % T0
    )
    with pytest.raises(InvalidRequest) as raised:
        parse_batch(document, datetime.now(UTC))
    assert raised.value.detail == {"events[0].playhead_s": "must be finite"}
