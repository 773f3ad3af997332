"""The CDN edge's purge interface: drop everything an edge keeps of one video.

    edge = edge_from_settings(load_settings())   # CdnEdge(EDGE_URL), or NoEdge when EDGE_URL is empty
    await edge.purge_video(video_id)             # returns once the edge confirmed; raises EdgePurgeError otherwise

Locally the edge is Varnish (infra/conf/varnish/edge.vcl, started by infra/services.py): a ``BAN`` request with
``X-Purge-Video: <id>`` adds the ban ``obj.http.X-Video-Id == <id>``, which matches every cached file of the video
(manifests and segments, whatever their URL) and is evaluated by Varnish's ban lurker in the background. Only
localhost may send one (the VCL's ACL). A commercial CDN sits behind the same ``Edge`` protocol: purge by tag
(surrogate key) = the video id.

A purge that is not confirmed raises, never returns quietly: the caller (processors/cdn_purge.py) retries it, so
a purge is never dropped. Purges are idempotent: banning a video twice costs a refetch at most.
"""

from __future__ import annotations

import re
from typing import Protocol

import aiohttp

from common.settings import Settings

# The ids the API accepts (api/http.py VIDEO_ID_RE) and the VCL checks again: nothing else reaches a ban.
VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
PURGE_HEADER = "X-Purge-Video"
BAN_METHOD = "BAN"


class EdgePurgeError(RuntimeError):
    """The edge did not confirm a purge (unreachable, timed out, refused): it may still serve the video."""


class Edge(Protocol):
    async def purge_video(self, video_id: str) -> None: ...

    async def close(self) -> None: ...


class CdnEdge:
    """Purges of one edge over HTTP (aiohttp). Purges are rare (a few per video in its life), so each opens its
    own connection unless a ``session`` is given to share."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, session: aiohttp.ClientSession | None = None) -> None:
        if not re.match(r"^https?://[^/]+", base_url):
            raise ValueError(f"EDGE_URL must be http(s)://host[:port], got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session

    async def purge_video(self, video_id: str) -> None:
        """Ban every cached object of ``video_id``; returns once the edge answered 200."""
        if not VIDEO_ID_RE.match(video_id):
            # Never a valid id: nothing of it can be cached (the API answers 404 for it), so nothing to purge.
            raise ValueError(f"not a video id: {video_id!r}")
        if self._session is not None:
            await self._ban(self._session, video_id)
            return
        async with aiohttp.ClientSession(timeout=self._timeout) as session:
            await self._ban(session, video_id)

    async def _ban(self, session: aiohttp.ClientSession, video_id: str) -> None:
        url = f"{self.base_url}/api/v1/videos/{video_id}/"
        try:
            async with session.request(
                BAN_METHOD, url, headers={PURGE_HEADER: video_id}, timeout=self._timeout
            ) as reply:
                body = await reply.text(errors="replace")
                if reply.status != 200:
                    raise EdgePurgeError(
                        f"edge {self.base_url} refused the purge of {video_id}: {reply.status} {body[:200]}"
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EdgePurgeError(f"edge {self.base_url} unreachable for the purge of {video_id}: {exc!r}") from exc

    async def close(self) -> None:
        """Nothing to release: the session, when one was given, is its owner's to close."""


class NoEdge:
    """No edge configured (``EDGE_URL`` empty): nothing caches the video, so there is nothing to purge."""

    async def purge_video(self, video_id: str) -> None:
        return None

    async def close(self) -> None:
        return None


def edge_from_settings(settings: Settings) -> Edge:
    return CdnEdge(settings.edge_url) if settings.edge_url else NoEdge()
