"""Handlers of playback: manifests, segments, progressive MP4, poster and storyboard, from the media bucket.

Every object lives at ``videos/{video_id}/...`` in the media bucket and is streamed from S3 chunk by chunk.
The CDN edge (Varnish) sits in front, so the headers matter as much as the bytes:

* ``Range`` (one range) → 206 with exactly those bytes via a ranged S3 GET; unsatisfiable → 416 with
  ``Content-Range: bytes */size``; several ranges → the whole object (RFC 9110 lets a server ignore Range);
* ``ETag`` is the S3 etag; ``If-None-Match`` → 304; ``If-Range`` is honoured;
* segments, init segments, poster, storyboard and progressive MP4 never change once written: cached for a
  year, immutable; manifests change while the video is ``playable`` (renditions still arriving): 5 s, then
  60 s once ``ready``.

Who may play what is api/access.py's: public and unlisted videos play for anyone; a private one for its owner
(bearer header) or through ``/api/v1/videos/{id}/p/{playback token}/...``, the same files under a path prefix
that relative URIs keep. Responses of private videos are ``Cache-Control: private`` (no shared cache keeps
them, whatever their TTL).

A video that is unknown, failed or deleted is a 404; a manifest asked for before the video is playable is
a 404 saying so. Paths are built only from an id and names matched against fixed patterns, never from raw
request text, so no traversal can reach another key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Literal

from aiohttp import hdrs, web
from minio.error import S3Error

from api.access import can_view, check_playback_token, is_gone, optional_principal
from api.errors import NotFound, RangeNotSatisfiable
from api.http import video_id_of
from api.keys import catalog_key, response_started_key, settings_key, store_key
from api.storage import ObjectChanged, ObjectInfo, is_missing

HLS = "application/vnd.apple.mpegurl"
DASH = "application/dash+xml"
MP4 = "video/mp4"
SEGMENT = "video/iso.segment"
JPEG = "image/jpeg"
VTT = "text/vtt"

IMMUTABLE = "public, max-age=31536000, immutable"
MANIFEST_PLAYABLE = "public, max-age=5"
MANIFEST_READY = "public, max-age=60"

RENDITION_RE = re.compile(r"^[a-z0-9-]{1,32}$")
# processors/media/manifests.py names each rendition's media playlist playlist.m3u8 (the multivariant playlist
# points at "<rendition>/playlist.m3u8"); index.m3u8 is accepted as well.
RENDITION_FILE_RE = re.compile(r"^(init\.mp4|seg_\d{5}\.m4s|index\.m3u8|playlist\.m3u8|iframes\.m3u8)$")
_RANGE_SPEC = re.compile(r"^(\d*)-(\d*)$")

Kind = Literal["manifest", "immutable"]


@dataclass(frozen=True)
class Asset:
    key: str  # under videos/{video_id}/
    content_type: str
    kind: Kind


# The fixed per-video files, by the last path segment of their route.
VIDEO_ASSETS = {
    "playlist.m3u8": Asset("master.m3u8", HLS, "manifest"),
    "manifest.mpd": Asset("manifest.mpd", DASH, "manifest"),
    "stream": Asset("progressive.mp4", MP4, "immutable"),
    "poster.jpg": Asset("poster.jpg", JPEG, "immutable"),
    "storyboard.vtt": Asset("storyboard.vtt", VTT, "immutable"),
    "storyboard.jpg": Asset("storyboard.jpg", JPEG, "immutable"),
}


def rendition_asset(rendition: str, file: str) -> Asset | None:
    if not RENDITION_RE.match(rendition) or not RENDITION_FILE_RE.match(file):
        return None
    if file.endswith(".m3u8"):
        return Asset(f"{rendition}/{file}", HLS, "manifest")
    return Asset(f"{rendition}/{file}", MP4 if file == "init.mp4" else SEGMENT, "immutable")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The (first, last) byte of a single ``bytes=`` range, or None to serve the whole object.

    Raises RangeNotSatisfiable for a well-formed range that misses the object. Several ranges, other
    units and malformed values are ignored, as RFC 9110 (14.2) allows.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = _RANGE_SPEC.match(spec.strip())
    if match is None or match.group(0) == "-":
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        if last and int(last) < start:
            return None  # invalid, not unsatisfiable
        if start >= size:
            raise RangeNotSatisfiable(size)
        return start, min(int(last), size - 1) if last else size - 1
    suffix = int(last)
    if suffix == 0 or size == 0:
        raise RangeNotSatisfiable(size)
    return max(0, size - suffix), size - 1


def _etags(header: str) -> list[str]:
    return [tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()]


def not_modified(request: web.Request, etag: str) -> bool:
    header = request.headers.get(hdrs.IF_NONE_MATCH)
    if header is None:
        return False
    tags = _etags(header)
    return "*" in tags or etag in tags  # weak comparison (RFC 9110, 13.1.2)


def range_applies(request: web.Request, etag: str, last_modified: str | None) -> bool:
    """If-Range: the range only counts if the client's copy is current (strong comparison)."""
    condition = request.headers.get(hdrs.IF_RANGE)
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        return condition == etag
    return last_modified is not None and condition == last_modified


async def serve_asset(request: web.Request, video_id: str, asset: Asset) -> web.StreamResponse:
    app = request.app
    token = request.match_info.get("token")
    if token is not None:
        check_playback_token(request, video_id, token)  # before any lookup: a refusal reveals nothing
    video = await app[catalog_key].get_video(video_id)
    if video is None or is_gone(video) or video.status == "failed":
        raise NotFound("video not found")
    if token is None and not can_view(video, optional_principal(request)):
        raise NotFound("video not found")
    if asset.kind == "manifest":
        if video.status not in ("playable", "ready"):
            raise NotFound("video is not playable yet", {"status": video.status})
        cache_control = MANIFEST_READY if video.status == "ready" else MANIFEST_PLAYABLE
    else:
        cache_control = IMMUTABLE
    if video.privacy == "private":
        cache_control = cache_control.replace("public", "private")
    bucket = app[settings_key].storage.media_bucket
    key = f"videos/{video_id}/{asset.key}"
    store = app[store_key]
    for attempt in range(3):
        info = await store.stat(bucket, key)
        if info is None:
            raise NotFound("not found", {"file": asset.key})
        try:
            return await _send(request, bucket, key, info, asset, cache_control)
        except ObjectChanged:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _send(
    request: web.Request, bucket: str, key: str, info: ObjectInfo, asset: Asset, cache_control: str
) -> web.StreamResponse:
    etag = f'"{info.etag}"'
    last_modified = format_datetime(info.last_modified, usegmt=True) if info.last_modified else None
    headers = {
        hdrs.ETAG: etag,
        hdrs.CACHE_CONTROL: cache_control,
        hdrs.ACCEPT_RANGES: "bytes",
    }
    if last_modified:
        headers[hdrs.LAST_MODIFIED] = last_modified
    if not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    byte_range = (
        parse_range(request.headers.get(hdrs.RANGE), info.size) if range_applies(request, etag, last_modified) else None
    )
    headers[hdrs.CONTENT_TYPE] = asset.content_type
    if byte_range is None:
        status, offset, length = 200, 0, info.size
    else:
        start, end = byte_range
        status, offset, length = 206, start, end - start + 1
        headers[hdrs.CONTENT_RANGE] = f"bytes {start}-{end}/{info.size}"
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    if request.method == hdrs.METH_HEAD or length == 0:
        await response.prepare(request)
        await response.write_eof()
        return response
    try:
        body = await request.app[store_key].open(
            bucket, key, info, offset=offset, length=length if status == 206 else 0
        )
    except S3Error as exc:
        if is_missing(exc):  # removed between the HEAD and the GET
            raise NotFound("not found") from None
        raise
    try:
        await response.prepare(request)
        request[response_started_key] = True
        async for chunk in body.chunks():
            await response.write(chunk)
    finally:
        await body.close()
    await response.write_eof()
    return response


async def video_asset(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /api/v1/videos/{id}/{playlist.m3u8|manifest.mpd|stream|poster.jpg|storyboard.*}``."""
    video_id = video_id_of(request)
    asset = VIDEO_ASSETS.get(request.match_info["asset"])
    if asset is None:
        raise NotFound("not found")
    return await serve_asset(request, video_id, asset)


async def rendition_file(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /api/v1/videos/{id}/{rendition}/{file}``: init, segments and media playlists."""
    video_id = video_id_of(request)
    asset = rendition_asset(request.match_info["rendition"], request.match_info["file"])
    if asset is None:
        raise NotFound("not found")
    return await serve_asset(request, video_id, asset)
