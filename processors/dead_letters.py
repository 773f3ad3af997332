"""Decoding with a dead-letter queue: a poison message goes to `<topic>.dlq` with its error, and the
partition keeps flowing. Agents consume raw bytes and decode here, so one bad message never stops a stream.

`decoded` is for a topic of one record; `decoded_records` for a topic that carries several (video.lifecycle:
VideoStatusChanged and VideoPrivacyChanged), yielding each message with the name of the record it is.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import Counter

from common.avro import default_codec

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter("dead_letters_total", "Messages sent to a dead-letter topic", ["topic", "agent"])


async def dead_letter(
    app: faust.App, event: EventT, error: BaseException, agent: str, payload: bytes | None = None
) -> None:
    message = event.message
    dlq = app.topic(f"{message.topic}.dlq", key_serializer="raw", value_serializer="raw")
    record = {
        "original_topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key if isinstance(message.key, bytes) else None,
        "payload": payload if payload is not None else (message.value or b""),
        "error": "".join(traceback.format_exception_only(type(error), error)).strip()[:4000],
        "error_type": type(error).__name__,
        "failed_at": datetime.now(UTC),
        "agent": agent,
    }
    await dlq.send(key=message.key, value=default_codec().encode("DeadLetter", record, topic=dlq.get_topic_name()))
    DEAD_LETTERS.labels(message.topic, agent).inc()
    log.error("dead-lettered %s[%d]@%d: %s", message.topic, message.partition, message.offset, record["error"])


async def decode_or_dead_letter(app: faust.App, event: EventT, record_name: str, agent: str) -> dict[str, Any] | None:
    """The event's value decoded as `record_name`, or None once it went to the dead-letter topic."""
    raw = event.value
    try:
        value: dict[str, Any] = default_codec().decode(raw, record_name)
    except ValueError as exc:  # UndecodableMessage and schema-resolution failures
        await dead_letter(app, event, exc, agent, raw if isinstance(raw, bytes) else None)
        return None
    return value


async def decoded(
    app: faust.App, stream: faust.StreamT, record_name: str, agent: str
) -> AsyncIterator[tuple[EventT, dict[str, Any]]]:
    """Yield (event, value) for each message that decodes as `record_name`; dead-letter the others."""
    async for event in stream.events():
        value = await decode_or_dead_letter(app, event, record_name, agent)
        if value is not None:
            yield event, value


async def decode_one_of(
    app: faust.App, event: EventT, records: tuple[str, ...], agent: str
) -> tuple[str, dict[str, Any]] | None:
    """(record name, value) of a message that is one of ``records``; None once anything else was dead-lettered."""
    raw = event.value
    errors: list[ValueError] = []
    for record in records:
        try:
            return record, default_codec().decode(raw, record)
        except ValueError as exc:  # UndecodableMessage: not this record, or not decodable at all
            errors.append(exc)
    await dead_letter(app, event, errors[-1], agent, raw if isinstance(raw, bytes) else None)
    return None


async def decoded_records(
    app: faust.App, stream: faust.StreamT, records: tuple[str, ...], agent: str
) -> AsyncIterator[tuple[EventT, str, dict[str, Any]]]:
    """Yield (event, record name, value) for each message of one of ``records``; dead-letter the others."""
    async for event in stream.events():
        found = await decode_one_of(app, event, records, agent)
        if found is not None:
            yield event, *found
