"""Faust's own consume path, measured alone: an agent that takes playback.telemetry in batches (`noack_take`,
as a batching QoE agent would), decodes each message (Avro) and acks it, nothing else.

    BENCH_TOPIC=<topic> BENCH_EXPECTED=<n> faust -A bench.faust_consume worker --without-web

bench/qoe_backlog.py starts it on its backlog and prints its rate beside the bare confluent-kafka consumer's:
the ceiling any Faust agent has on this machine, before it does any work of its own. The worker prints
`faust consume: <n> events/s` once it has seen BENCH_EXPECTED messages, then exits.
"""

from __future__ import annotations

import os
import sys
import time
from typing import cast

import faust

from common.avro import default_codec
from common.settings import load_settings
from processors.app import broker_options

app = faust.App(
    f"bench-faust-consume-{os.getpid()}",
    **broker_options(load_settings()),
    store="memory://",
    web_enabled=False,
    consumer_auto_offset_reset="earliest",
    stream_wait_empty=False,
)
telemetry_topic = app.topic(os.environ["BENCH_TOPIC"], key_serializer="raw", value_serializer="raw")
EXPECTED = int(os.environ["BENCH_EXPECTED"])


@app.agent(telemetry_topic)
async def decode_only(stream: faust.StreamT) -> None:
    codec = default_codec()
    seen = 0
    began = 0.0
    batches = cast(faust.Stream, stream)
    async for events in batches.noack_take(2000, within=0.1):
        began = began or time.monotonic()
        for event in events:
            codec.decode(event.message.value or b"", "PlaybackEvent")
            event.ack()
        seen += len(events)
        if seen >= EXPECTED:
            print(f"faust consume: {seen / (time.monotonic() - began):.0f} events/s", flush=True)
            sys.stdout.flush()
            os._exit(0)
