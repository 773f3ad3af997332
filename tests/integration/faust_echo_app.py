"""A Faust app used by test_kafka_avro.py: reads VideoUploaded, answers VideoStatusChanged.

It proves the codec is shared: confluent-kafka writes what Faust reads (FaustAvroCodec) and Faust writes
what confluent-kafka reads; a message that does not decode goes to the input's DLQ.
Run by the test as `faust -A tests.integration.faust_echo_app worker` with ECHO_IN / ECHO_OUT set.
"""

from __future__ import annotations

import os

import faust

from common.avro import FaustAvroCodec
from common.settings import load_settings
from processors.app import broker_options
from processors.dead_letters import decoded

app = faust.App(
    os.environ["ECHO_GROUP"],
    **broker_options(load_settings()),
    store="memory://",
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
)
uploads_topic = app.topic(os.environ["ECHO_IN"], key_serializer="raw", value_serializer="raw")
statuses_topic = app.topic(
    os.environ["ECHO_OUT"], key_serializer="raw", value_serializer=FaustAvroCodec("VideoStatusChanged")
)


@app.agent(uploads_topic)
async def answer_uploads(stream: faust.StreamT) -> None:
    async for event, upload in decoded(app, stream, "VideoUploaded", "answer_uploads"):
        await statuses_topic.send(
            key=event.key,
            value={
                "video_id": upload["video_id"],
                "status": "PROCESSING",
                "reason": f"seen {upload['original_filename']}",
                "changed_at": upload["uploaded_at"],
                "progress": 0.0,
            },
        )
