"""The OpenAPI document (api/openapi.yaml, served at /api/v1/openapi.json) describes exactly the routes the
application registers, and is a valid OpenAPI 3.1 document. No server is needed: building the app connects to
nothing (its resources open on startup, which these tests never run)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from aiohttp import hdrs, web
from aiohttp.test_utils import make_mocked_request
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from api.app import init_app
from api.keys import openapi_body_key
from api.openapi import load_document, openapi_json
from common.settings import load_settings

METHODS = ("get", "put", "post", "delete", "patch")
AUTO_METHODS = (hdrs.METH_HEAD, hdrs.METH_OPTIONS)
PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@pytest.fixture(scope="module")
async def app() -> web.Application:
    return await init_app(load_settings())


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return load_document()


def routed(app: web.Application) -> set[tuple[str, str]]:
    """(method, path template) of every route, `{name:regex}` written as `{name}` (as OpenAPI does)."""
    pairs = set()
    for route in app.router.routes():
        if route.method in AUTO_METHODS:
            continue
        assert route.resource is not None
        pairs.add((route.method.upper(), route.resource.canonical))
    return pairs


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS}


def test_every_route_is_documented_and_every_documented_operation_exists(
    app: web.Application, document: dict[str, Any]
) -> None:
    routes, operations = routed(app), documented(document)
    assert not routes - operations, f"routes missing from api/openapi.yaml: {sorted(routes - operations)}"
    assert not operations - routes, f"documented but not routed: {sorted(operations - routes)}"
    assert len(operations) >= 49


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)  # raises OpenAPIValidationError naming what is wrong


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def test_path_parameters_match_each_template(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        names = set(PATH_PARAM.findall(path))
        for method, operation in item.items():
            if method not in METHODS:
                continue
            params = [_resolve(document, p) for p in item.get("parameters", []) + operation.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == names, f"{method.upper()} {path}: path parameters {sorted(declared)}"


def test_every_operation_names_its_responses_and_error_body(document: dict[str, Any]) -> None:
    error_ref = "#/components/schemas/Error"
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            statuses = set(operation["responses"])
            assert any(s.startswith("2") for s in statuses), f"{method.upper()} {path}: no success status"
            assert operation.get("operationId"), f"{method.upper()} {path}: no operationId"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/api/v1/health":
                    schema = _resolve(document, response)["content"]["application/json"]["schema"]
                    assert schema == {"$ref": error_ref}, f"{method.upper()} {path} {status}"


def test_bearer_operations_document_401(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS and {"bearerAuth": []} in operation.get("security", []):
                assert "401" in operation["responses"], f"{method.upper()} {path}"


def test_the_app_serves_the_document_as_json(app: web.Application, document: dict[str, Any]) -> None:
    assert json.loads(app[openapi_body_key]) == document


async def test_the_handler_answers_json(app: web.Application, document: dict[str, Any]) -> None:
    request = make_mocked_request("GET", "/api/v1/openapi.json", app=app)
    response = await openapi_json(request)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert isinstance(response.body, bytes)
    assert json.loads(response.body) == document
