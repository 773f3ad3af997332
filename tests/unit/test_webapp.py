"""The API's serving of the web app (api/webapp.py): cache headers, the CSP, the client-side-route fallback, and
that /api/... is never shadowed. A stand-in build in a temporary directory; no server is needed (the app under
test has the API's error middleware and one API route, not its Kafka/Cassandra resources)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from api.app import init_app
from api.errors import error_middleware
from api.webapp import IMMUTABLE, setup_web_app
from common.settings import load_settings

INDEX = '<!doctype html><html><head><script type="module" src="/assets/index-3f2a1b.js"></script></head></html>'
SCRIPT = "console.log('app');" * 200


async def health(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text(INDEX)
    (tmp_path / "assets" / "index-3f2a1b.js").write_text(SCRIPT)
    (tmp_path / "assets" / "index-3f2a1b.js.gz").write_bytes(gzip.compress(SCRIPT.encode()))
    (tmp_path / "robots.txt").write_text("User-agent: *\n")
    (tmp_path.parent / "secret.txt").write_text("outside the build")
    return tmp_path


async def client_for(aiohttp_client: Any, dist: Path) -> TestClient[Any, Any]:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/api/v1/health", health)
    setup_web_app(app, dist)
    made: TestClient[Any, Any] = await aiohttp_client(app)
    return made


async def test_hashed_assets_are_immutable_and_gzipped_when_accepted(aiohttp_client: Any, dist: Path) -> None:
    client = await client_for(aiohttp_client, dist)
    reply = await client.get("/assets/index-3f2a1b.js", headers={"Accept-Encoding": "gzip"})
    assert reply.status == 200
    assert reply.headers["Cache-Control"] == IMMUTABLE
    assert reply.headers["Content-Type"].startswith(("text/javascript", "application/javascript"))
    assert reply.headers["Content-Encoding"] == "gzip"
    assert await reply.text() == SCRIPT  # the client decodes it
    plain = await client.get("/assets/index-3f2a1b.js", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and await plain.text() == SCRIPT


@pytest.mark.parametrize("path", ["/", "/watch/0b5c3e0e-7a4e-4d9f-9d1f-1f1f1f1f1f1f", "/search?q=bunny", "/signin"])
async def test_pages_get_the_html_uncached_with_a_strict_csp(aiohttp_client: Any, dist: Path, path: str) -> None:
    client = await client_for(aiohttp_client, dist)
    reply = await client.get(path)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.headers["Cache-Control"] == "no-cache"
    csp = reply.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "object-src 'none'" in csp
    assert await reply.text() == INDEX
    head = await client.head(path)
    assert head.status == 200 and head.headers["Cache-Control"] == "no-cache"


async def test_api_paths_are_never_shadowed(aiohttp_client: Any, dist: Path) -> None:
    client = await client_for(aiohttp_client, dist)
    assert (await client.get("/api/v1/health")).status == 200
    for path in ("/api/v1/no-such-route", "/api", "/api/"):
        reply = await client.get(path)
        assert reply.status == 404, path
        assert reply.headers["Content-Type"].startswith("application/json"), path
    # Not a GET: the app answers nothing but pages.
    assert (await client.post("/watch/x")).status in (404, 405)


async def test_missing_files_are_404_not_the_page(aiohttp_client: Any, dist: Path) -> None:
    client = await client_for(aiohttp_client, dist)
    for path in ("/assets/index-000000.js", "/assets/", "/logo.png", "/assets/../../secret.txt", "/%2e%2e/secret.txt"):
        reply = await client.get(path)
        assert reply.status == 404, path
        assert "outside the build" not in await reply.text()
    robots = await client.get("/robots.txt")
    assert robots.status == 200 and robots.headers["Cache-Control"] == "no-cache"


async def test_an_unbuilt_app_answers_503_naming_the_step(aiohttp_client: Any, tmp_path: Path) -> None:
    client = await client_for(aiohttp_client, tmp_path / "none")
    reply = await client.get("/")
    assert reply.status == 503
    assert (await reply.json())["detail"]["build"] == "make bootstrap"


async def test_the_api_application_serves_the_app() -> None:
    app = await init_app(load_settings())  # built, not started: nothing connects
    assert any(getattr(m, "__name__", "") == "serve_web_app" for m in app.middlewares)
