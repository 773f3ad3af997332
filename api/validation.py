"""Checking the metadata a creator sends with an upload (JSON body or form fields).

Every problem is collected and reported at once as ``{field: problem}`` in a 400, so a client fixes its
request in one round: unknown fields, fields the platform owns (read-only), wrong types, out-of-range values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.errors import InvalidRequest, PayloadTooLarge
from sinks.catalog import PRIVACY_VALUES

TITLE_MAX = 200
DESCRIPTION_MAX = 5000
TAGS_MAX = 30
TAG_MAX = 40
FILENAME_MAX = 255

# What a creator may send when creating a video.
WRITABLE_FIELDS = frozenset(
    {"title", "description", "tags", "privacy", "thumbnail_time", "filename", "size_bytes", "content_type"}
)
# Fields of a video that only the platform sets: named as such, so a client sees why it was refused.
READ_ONLY_FIELDS = frozenset(
    {
        "video_id",
        "status",
        "status_reason",
        "reason",
        "owner_id",
        "created_at",
        "updated_at",
        "playable_at",
        "ready_at",
        "duration_s",
        "width",
        "height",
        "fps",
        "renditions",
        "urls",
        "upload",
        "source_bucket",
        "source_key",
        "original_filename",
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # a description may have lines
_MIME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;.*)?$")


@dataclass(frozen=True)
class VideoMetadata:
    title: str
    description: str | None = None
    tags: tuple[str, ...] = ()
    privacy: str = "public"
    thumbnail_time_s: float | None = None
    filename: str | None = None
    content_type: str | None = None
    size_bytes: int | None = None

    def catalog_fields(self) -> dict[str, Any]:
        """The fields ``Catalog.create_video`` stores."""
        return {
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "privacy": self.privacy,
            "thumbnail_time_s": self.thumbnail_time_s,
        }


class _Problems:
    def __init__(self) -> None:
        self.by_field: dict[str, str] = {}

    def add(self, field: str, problem: str) -> None:
        self.by_field.setdefault(field, problem)


def _text(
    problems: _Problems, name: str, value: Any, *, max_len: int, required: bool = False, multiline: bool = False
) -> str | None:
    if value is None:
        if required:
            problems.add(name, "is required")
        return None
    if not isinstance(value, str):
        problems.add(name, f"must be a string, got {type(value).__name__}")
        return None
    value = value.strip()
    if required and not value:
        problems.add(name, "must not be empty")
        return None
    if len(value) > max_len:
        problems.add(name, f"must be at most {max_len} characters, got {len(value)}")
        return None
    if (_CONTROL_BUT_LINES if multiline else _CONTROL).search(value):
        problems.add(name, "must not contain control characters")
        return None
    return value or None


def _tags(problems: _Problems, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        problems.add("tags", "must be a list of strings")
        return ()
    tags: list[str] = []
    for tag in (tag.strip() for tag in value):
        if not tag:
            problems.add("tags", "must not contain empty tags")
        elif len(tag) > TAG_MAX:
            problems.add("tags", f"each tag must be at most {TAG_MAX} characters ({tag[:20]!r}...)")
        elif _CONTROL.search(tag):
            problems.add("tags", "must not contain control characters")
        elif tag not in tags:
            tags.append(tag)
    if len(tags) > TAGS_MAX:
        problems.add("tags", f"must hold at most {TAGS_MAX} tags, got {len(tags)}")
    return tuple(tags)


def _number(problems: _Problems, name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(name, f"must be a number, got {type(value).__name__}")
        return None
    if not math.isfinite(value) or value < 0:
        problems.add(name, "must be a finite number of seconds >= 0")
        return None
    return float(value)


def _size(problems: _Problems, value: Any, required: bool) -> int | None:
    if value is None:
        if required:
            problems.add("size_bytes", "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add("size_bytes", f"must be an integer, got {type(value).__name__}")
        return None
    if value <= 0:
        problems.add("size_bytes", "must be greater than 0")
        return None
    return value


def _check_names(problems: _Problems, names: Any) -> None:
    for name in sorted(str(n) for n in names):
        if name in READ_ONLY_FIELDS:
            problems.add(name, "is read-only")
        elif name not in WRITABLE_FIELDS:
            problems.add(name, "is not a known field")


def _build(
    problems: _Problems, fields: Mapping[str, Any], *, size_required: bool, max_upload_bytes: int
) -> VideoMetadata:
    title = _text(problems, "title", fields.get("title"), max_len=TITLE_MAX, required=True)
    description = _text(problems, "description", fields.get("description"), max_len=DESCRIPTION_MAX, multiline=True)
    tags = _tags(problems, fields.get("tags"))
    privacy = fields.get("privacy", "public")
    if privacy is None:
        privacy = "public"
    if privacy not in PRIVACY_VALUES:
        problems.add("privacy", f"must be one of {', '.join(PRIVACY_VALUES)}")
    thumbnail = _number(problems, "thumbnail_time", fields.get("thumbnail_time"))
    filename = _text(problems, "filename", fields.get("filename"), max_len=FILENAME_MAX)
    content_type = _text(problems, "content_type", fields.get("content_type"), max_len=255)
    if content_type is not None and not _MIME.match(content_type):
        problems.add("content_type", "must be a MIME type like video/mp4")
    size = _size(problems, fields.get("size_bytes"), size_required)
    if problems.by_field:
        raise InvalidRequest(detail=problems.by_field)
    if size is not None and size > max_upload_bytes:
        raise PayloadTooLarge("upload too large", {"size_bytes": size, "max_upload_bytes": max_upload_bytes})
    assert title is not None  # required: a problem was raised otherwise
    return VideoMetadata(
        title=title,
        description=description,
        tags=tags,
        privacy=str(privacy),
        thumbnail_time_s=thumbnail,
        filename=filename,
        content_type=content_type,
        size_bytes=size,
    )


def parse_create_body(body: Any, max_upload_bytes: int) -> VideoMetadata:
    """The metadata of ``POST /api/v1/videos`` (a JSON object; size_bytes required)."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    problems = _Problems()
    _check_names(problems, body.keys())
    return _build(problems, body, size_required=True, max_upload_bytes=max_upload_bytes)


def parse_form_fields(form: Mapping[str, str], max_upload_bytes: int) -> VideoMetadata:
    """The metadata form fields of ``POST /api/v1/videos/upload`` (all text; tags comma-separated)."""
    problems = _Problems()
    _check_names(problems, form.keys())
    fields: dict[str, Any] = dict(form)
    if "tags" in form:
        fields["tags"] = [tag for tag in form["tags"].split(",") if tag.strip()]
    for name, kind in (("thumbnail_time", float), ("size_bytes", int)):
        if name in form:
            try:
                fields[name] = kind(form[name].strip())
            except ValueError:
                problems.add(name, f"must be {'a number' if kind is float else 'an integer'}, got {form[name]!r}")
                del fields[name]
    return _build(problems, fields, size_required=False, max_upload_bytes=max_upload_bytes)


# What an owner may change after the upload (PATCH), by request name -> catalogue column.
EDITABLE_REQUEST_FIELDS = {
    "title": "title",
    "description": "description",
    "tags": "tags",
    "privacy": "privacy",
    "thumbnail_time": "thumbnail_time_s",
}
# Fixed by the upload itself.
UPLOAD_FIELDS = frozenset({"filename", "size_bytes", "content_type"})


def parse_edit_body(body: Any) -> dict[str, Any]:
    """The changes of ``PATCH /api/v1/videos/{id}`` as ``Catalog.edit_video`` takes them.

    Only the fields of EDITABLE_REQUEST_FIELDS; owner_id, status and every other platform field is a 400 (no
    mass assignment), and so is an empty change. ``description: null`` clears the description.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    problems = _Problems()
    for name in sorted(str(n) for n in body):
        if name in READ_ONLY_FIELDS:
            problems.add(name, "is read-only")
        elif name in UPLOAD_FIELDS:
            problems.add(name, "is fixed by the upload and cannot be changed")
        elif name not in EDITABLE_REQUEST_FIELDS:
            problems.add(name, "is not a known field")
    if not body:
        raise InvalidRequest("nothing to change", {"fields": sorted(EDITABLE_REQUEST_FIELDS)})
    changes: dict[str, Any] = {}
    if "title" in body:
        changes["title"] = _text(problems, "title", body["title"], max_len=TITLE_MAX, required=True)
    if "description" in body:
        changes["description"] = _text(
            problems, "description", body["description"], max_len=DESCRIPTION_MAX, multiline=True
        )
    if "tags" in body:
        changes["tags"] = list(_tags(problems, body["tags"]))
    if "privacy" in body and body["privacy"] not in PRIVACY_VALUES:
        problems.add("privacy", f"must be one of {', '.join(PRIVACY_VALUES)}")
    elif "privacy" in body:
        changes["privacy"] = body["privacy"]
    if "thumbnail_time" in body:
        changes["thumbnail_time_s"] = _number(problems, "thumbnail_time", body["thumbnail_time"])
    if problems.by_field:
        raise InvalidRequest(detail=problems.by_field)
    return changes
