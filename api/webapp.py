"""The web app (web/app, built by Vite into web/app/dist) served at ``/`` by the API itself.

Requests no route answers fall through to here (a middleware, not a catch-all route: ``/api/...`` is never
shadowed, a mistyped API path stays a JSON 404, and api/openapi.yaml keeps describing exactly the API's routes):

- ``/assets/<name>``: Vite's content-hashed files, ``Cache-Control: public, max-age=31536000, immutable``;
  a missing one is a 404, never the HTML (an old page asking for an old asset must not get a page back);
- another file of the build (``/favicon.ico``, ...): served, revalidated each time;
- any other GET/HEAD path without a file extension is a client-side route (``/watch/{id}``, ``/search?q=``):
  index.html, ``Cache-Control: no-cache`` (revalidated by ETag), with the Content-Security-Policy below.

Files with a ``.gz`` beside them (written by the build) go out gzip-encoded to clients that accept it
(aiohttp's FileResponse picks the sibling and adds ``Vary: Accept-Encoding``).

The build is made by ``infra/bootstrap.sh`` (``npm ci && npm run build`` in web/app, skipped when up to date).
``WEB_APP_DIR`` points at another build; without one, app paths answer 503 naming the missing step.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from api.errors import NotFound, Unavailable
from common.settings import REPO_ROOT

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# No 'unsafe-inline' anywhere: Vite emits no inline script or style, and Preact sets style properties through
# the CSSOM, which style-src does not govern. blob: for hls.js (MSE object URLs, its transmuxing worker).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HTML_HEADERS = {
    hdrs.CACHE_CONTROL: REVALIDATE,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def default_dist() -> Path:
    return Path(os.environ.get("WEB_APP_DIR", REPO_ROOT / "web" / "app" / "dist")).resolve()


def _is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def _file_in(dist: Path, path: str) -> Path | None:
    """The build's file at this URL path, or None; never a file outside the build (``..``, symlinks out)."""
    relative = path.lstrip("/")
    if not relative:
        return None
    candidate = (dist / relative).resolve()
    if not candidate.is_relative_to(dist) or not candidate.is_file():
        return None
    return candidate


def web_app_response(dist: Path, path: str) -> web.FileResponse:
    """What the app answers for a GET of ``path``; raises NotFound or Unavailable (api/errors.py maps them)."""
    index = dist / "index.html"
    if not index.is_file():
        raise Unavailable("web app not built", {"missing": str(index), "build": "make bootstrap"})
    if path.startswith("/assets/"):
        asset = _file_in(dist, path)
        if asset is None:
            raise NotFound("no such asset")
        return web.FileResponse(asset, headers={hdrs.CACHE_CONTROL: IMMUTABLE, "X-Content-Type-Options": "nosniff"})
    found = _file_in(dist, path)
    if found is not None and found.name != "index.html" and not found.name.endswith(".gz"):
        return web.FileResponse(found, headers={hdrs.CACHE_CONTROL: REVALIDATE, "X-Content-Type-Options": "nosniff"})
    if "." in path.rsplit("/", 1)[-1] and found is None:
        raise NotFound("no such file")  # a missing file, not a page: no HTML for /missing.png
    return web.FileResponse(index, headers=HTML_HEADERS)


def setup_web_app(app: web.Application, dist: Path | None = None) -> None:
    """Serve the built app for every GET/HEAD no route answers, outside ``/api/``. Call before the app starts."""
    root = (dist or default_dist()).resolve()

    @web.middleware
    async def serve_web_app(request: web.Request, handler: Handler) -> web.StreamResponse:
        unrouted = isinstance(request.match_info.http_exception, web.HTTPNotFound)
        if not unrouted or request.method not in (hdrs.METH_GET, hdrs.METH_HEAD) or _is_api(request.path):
            return await handler(request)
        return web_app_response(root, request.path)

    # Innermost: the error middleware outside it turns NotFound/Unavailable into the API's JSON errors.
    app.middlewares.append(serve_web_app)
