"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of this API (``api/openapi.yaml``).

The YAML is read once, when the application is built (``init_app`` stores ``document_body()``), and served as JSON
from then on; a broken document fails the start, not a request. ``tests/unit/test_openapi.py`` keeps it equal to
the routes and valid.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from api.keys import openapi_body_key

DOCUMENT_PATH = Path(__file__).with_name("openapi.yaml")


def load_document(path: Path = DOCUMENT_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise ValueError(f"{path} is not an OpenAPI 3 document")
    return document


def document_body(path: Path = DOCUMENT_PATH) -> bytes:
    """The document as the JSON bytes ``openapi_json`` serves."""
    return json.dumps(load_document(path), ensure_ascii=False).encode()


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[openapi_body_key],
        content_type="application/json",
        headers={"Cache-Control": "public, max-age=300"},
    )
