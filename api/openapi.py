"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of this API (``api/openapi.yaml``).

The YAML is read once, when the application is built, and served as JSON from then on; a broken document
fails the start, not a request. ``tests/unit/test_openapi.py`` keeps it equal to the routes and valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

DOCUMENT_PATH = Path(__file__).with_name("openapi.yaml")

openapi_body_key = web.AppKey("openapi_body", bytes)


def load_document(path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise ValueError(f"{path} is not an OpenAPI 3 document")
    return document


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[openapi_body_key],
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )


def setup_openapi(app: web.Application) -> None:
    app[openapi_body_key] = json.dumps(load_document(), ensure_ascii=False).encode()
    app.router.add_get("/api/v1/openapi.json", openapi_json, name="openapi")
