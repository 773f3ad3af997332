"""The pure parts of api/tus.py: Upload-Metadata parsing (checked like the form's fields) and the part size."""

from __future__ import annotations

import base64

import pytest

from api.config import MiB
from api.errors import InvalidRequest
from api.tus import parse_metadata, part_size_for


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_metadata_maps_tus_client_keys_to_the_form_fields() -> None:
    header = f"title {b64('Ünïcode')},tags {b64('a, b')},name {b64('clip.mov')},filetype {b64('video/quicktime')}"
    meta = parse_metadata(header, 1234, 10_000)
    assert meta.title == "Ünïcode" and meta.tags == ("a", "b") and meta.filename == "clip.mov"
    assert meta.content_type == "video/quicktime" and meta.size_bytes == 1234
    # No type given: guessed from the name, as the form does.
    assert parse_metadata(f"title {b64('x')},filename {b64('a.mp4')}", 1, 10).content_type == "video/mp4"


@pytest.mark.parametrize(
    ("header", "field"),
    [
        (None, "title"),
        (f"title {b64('x')},title {b64('y')}", "Upload-Metadata"),
        ("title !!!", "title"),
        (f"title {b64('x')},size_bytes {b64('5')}", "size_bytes"),
        (f"title {b64('x')},owner_id {b64('me')}", "owner_id"),
        (f"title {b64('x')},privacy {b64('secret')}", "privacy"),
    ],
)
def test_bad_metadata_names_the_field(header: str | None, field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_metadata(header, 10, 100)
    assert field in raised.value.detail


def test_parts_are_5_mib_or_more_within_10000_parts() -> None:
    assert part_size_for(1) == 5 * MiB
    assert part_size_for(10 * 1024 * MiB) == 5 * MiB
    big = 100 * 1024 * MiB
    assert part_size_for(big) % MiB == 0 and part_size_for(big) * 10_000 >= big
