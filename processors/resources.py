"""Clients and scratch space the agents share inside one worker process, created on first use.

Blocking clients (Cassandra connect, minio) are created once; agents call them through `asyncio.to_thread`
or the driver's async API so the event loop keeps serving Kafka heartbeats while media work runs.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
from collections import defaultdict
from pathlib import Path

from minio import Minio

from common.cassandra import shared_session
from common.settings import load_settings, state_dir
from common.storage import storage_client
from sinks.catalog import Catalog

# Sources kept per worker: chunks of one video usually land on the same worker one after another.
SOURCE_CACHE_ENTRIES = int(os.environ.get("SOURCE_CACHE_ENTRIES", "6"))
CONTENT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".mp4": "video/mp4",
    ".m4s": "video/iso.segment",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt",
}


@functools.cache
def catalog() -> Catalog:
    return Catalog(shared_session())


@functools.cache
def storage() -> Minio:
    return storage_client(load_settings().storage)


def work_dir() -> Path:
    """Scratch space of this worker; every job gets its own directory below it."""
    path = Path(os.environ.get("WORK_DIR", state_dir() / "work" / f"{os.getpid()}"))
    path.mkdir(parents=True, exist_ok=True)
    return path


async def download(bucket: str, key: str, path: Path) -> Path:
    """Fetch an object to `path` through a temporary name, so a half-written file is never used."""
    partial = path.with_name(path.name + ".partial")
    await asyncio.to_thread(storage().fget_object, bucket, key, str(partial))
    partial.replace(path)
    return path


async def upload(bucket: str, key: str, path: Path, cache_control: str | None = None) -> None:
    metadata: dict[str, str | list[str] | tuple[str]] | None = (
        {"Cache-Control": cache_control} if cache_control else None
    )
    content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
    await asyncio.to_thread(storage().fput_object, bucket, key, str(path), content_type=content_type, metadata=metadata)


_source_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


async def cached_source(video_id: str, bucket: str, key: str) -> Path:
    """The video's original as a local file of its own (one directory per video, nothing else in it)."""
    root = work_dir() / "sources"
    directory = root / video_id.replace("/", "_")
    path = directory / "source"
    async with _source_locks[video_id]:
        if path.exists():
            path.touch()
            return path
        directory.mkdir(parents=True, exist_ok=True)
        await download(bucket, key, path)
    _evict_old_sources(root)
    return path


def _evict_old_sources(root: Path) -> None:
    def last_used(directory: Path) -> float:
        source = directory / "source"
        return source.stat().st_mtime if source.exists() else 0.0

    entries = sorted(root.iterdir(), key=last_used, reverse=True)
    for stale in entries[SOURCE_CACHE_ENTRIES:]:
        shutil.rmtree(stale, ignore_errors=True)
