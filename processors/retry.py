"""Waiting out a store that is away for a moment (Cassandra restarting, S3 unreachable), in any agent.

    await until_applied(functools.partial(store.write_row, value), f"row of {video_id}")

Why every agent needs it: an exception that leaves an agent's body makes Faust restart the agent *past* the
event it was handling (the event is acked), so a Cassandra timeout would silently drop that event, and a
stateful agent would then wait for it forever (the QoE reorder buffer waits for the missing seq). Retrying in
place instead keeps the partition where it is until the store answers: nothing is lost, later events of the
partition wait behind it, and the consumer stays in its group (Faust keeps polling while the agent waits).

A step must be idempotent (deterministic keys, absolute values): a timed-out write may have been applied, and
it runs again. Only failures of the stores' transport are retried; a bug raises as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cassandra import DriverException
from cassandra.cluster import NoHostAvailable
from confluent_kafka import KafkaException
from minio.error import S3Error, ServerError
from prometheus_client import Counter
from urllib3.exceptions import HTTPError as StorageTransportError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0

# Timeouts, unavailable replicas and no host at all (Cassandra); refused connections and 5xx (S3); a Kafka
# write not acknowledged (the QoE checkpoints).
TRANSIENT_STORE_ERRORS: tuple[type[BaseException], ...] = (
    KafkaException,
    DriverException,
    NoHostAvailable,
    StorageTransportError,
    ServerError,
)

STORE_RETRIES = Counter("store_retries_total", "Agent steps retried after a store (Cassandra, S3) failed", ["step"])


def is_transient(exc: BaseException) -> bool:
    """A failure worth waiting out: the stores' transport, or an S3 error the server calls temporary."""
    if isinstance(exc, S3Error):
        return exc.code in {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
    return isinstance(exc, TRANSIENT_STORE_ERRORS)


async def until_applied(step: Callable[[], Awaitable[T]], what: str, *, kind: str = "write") -> T:
    """Run ``step`` until it succeeds (its result returned), backing off from RETRY_FIRST_S to RETRY_MAX_S."""
    delay = RETRY_FIRST_S
    while True:
        try:
            return await step()
        except Exception as exc:
            if not is_transient(exc):
                raise
            STORE_RETRIES.labels(kind).inc()
            log.warning("%s failed (%r); retrying in %.1f s", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


async def applied_once(step: Callable[[], Awaitable[object]], what: str) -> bool:
    """Run ``step`` once; False (logged) when a store was away, for a timer that tries again on its next round
    instead of holding up the others. A failure that is not the stores' transport raises."""
    try:
        await step()
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("%s failed (%r); tried again later", what, exc)
        return False
    return True
