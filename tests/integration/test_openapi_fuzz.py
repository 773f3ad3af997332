"""Property-based fuzz of the whole API from its OpenAPI document (api/openapi.yaml), with schemathesis.

Every documented operation gets up to MAX_EXAMPLES generated requests (its documented examples first, then
positive and negative data, derandomized so a run is repeatable), sent over HTTP to the application running
in this process on a real localhost port, with the real Kafka, Cassandra and S3 behind it (fresh topics and a
fresh keyspace for this module), signed in as a creator. The property is the one issue 5 asks for: no
operation answers a 5xx, whatever it is sent. A failure prints the request that reproduces it.

    .venv/bin/python -m pytest tests/integration/test_openapi_fuzz.py -q
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from api.app import init_app
from api.openapi import load_document
from common.settings import Settings
from tests.auth_tools import PASSWORD
from tests.scratch import scratch_platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_EXAMPLES = 25
REQUEST_TIMEOUT_S = 30
T = TypeVar("T")

DOCUMENT = load_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)
# The examples and fuzzing phases only: the coverage phase adds hundreds of boundary cases per operation, and
# the stateful phase needs links the document does not declare. max_examples bounds the fuzzing phase.
schema.config.phases.update(phases=["examples", "fuzzing"])
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True)
# CMCD v2 event reports are text (one RFC 8941 dictionary per line): sent like text/plain.
schemathesis.serializer.alias("application/cmcd", "text/plain")
# A tus PATCH body is raw bytes of the upload: sent like application/octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@dataclasses.dataclass(frozen=True)
class LiveApi:
    base_url: str
    headers: dict[str, str]
    session: requests.Session


class ServerThread:
    """An event loop of its own on a thread: the generated tests are synchronous and block the caller's
    thread on each request, so the application must answer from another one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzzed-api", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float = 180) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def fuzz_settings(live_servers: Settings) -> Iterator[Settings]:
    """Topics and a keyspace of this module: what the fuzzer writes lands nowhere else."""
    yield from scratch_platform(live_servers, "fuzz")


@pytest.fixture(scope="module")
def live_api(fuzz_settings: Settings) -> Iterator[LiveApi]:
    """The application on 127.0.0.1 (a free port), and the bearer header of a fresh creator account."""
    worker = ServerThread()

    async def start() -> TestServer:
        server = TestServer(await init_app(fuzz_settings), host="127.0.0.1")
        await server.start_server()
        return server

    server = worker.run(start())
    session = requests.Session()
    try:
        base_url = f"http://127.0.0.1:{server.port}"
        email = f"fuzz-{uuid.uuid4().hex[:12]}@example.test"
        signed_up = session.post(
            f"{base_url}/api/v1/auth/signup",
            json={"email": email, "password": PASSWORD, "role": "creator"},
            timeout=REQUEST_TIMEOUT_S,
        )
        assert signed_up.status_code == 201, signed_up.text
        headers = {"Authorization": f"Bearer {signed_up.json()['access_token']}"}
        yield LiveApi(base_url, headers, session)
    finally:
        session.close()
        worker.run(server.close())
        worker.stop()


def test_the_served_document_is_the_one_fuzzed(live_api: LiveApi) -> None:
    response = live_api.session.get(f"{live_api.base_url}/api/v1/openapi.json", timeout=REQUEST_TIMEOUT_S)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == DOCUMENT


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_no_operation_answers_a_server_error(case: schemathesis.Case, live_api: LiveApi) -> None:
    case.call_and_validate(
        base_url=live_api.base_url,
        session=live_api.session,
        headers=live_api.headers,
        checks=[not_a_server_error],
        timeout=REQUEST_TIMEOUT_S,
    )
