"""The QoE worker's own capacity: one worker process on a backlog of playback.telemetry, beside a bare consumer
that only decodes the same messages, then its memory holding many open sessions and its restart time.

    .venv/bin/python -m bench.qoe_backlog [--sessions 6000] [--open-sessions 100000]

Needs Kafka and Cassandra (`make up`); stop the platform's QoE worker first, the machine has 2 cores. Runs on
a scratch platform (topics under a fresh prefix, a fresh keyspace, both removed afterwards):

1. simulated players (tests/qoe_simulate.py: starts, stalls, switches, seeks, failures, duplicates, late and
   out-of-order delivery) are produced onto playback.telemetry as the collector would (received_ts);
2. a bare confluent-kafka consumer reads and decodes them (Avro) and does nothing else: the ceiling of any
   consumer written in Python on this machine;
3. a QoE worker is started on the backlog; its rate is the events it processed (its Prometheus counter) from
   its first to its last, and "durable" the time until its last flush wrote them (Cassandra and the
   checkpoint topic);
4. then `--open-sessions` sessions each open a view (PLAY_REQUESTED, FIRST_FRAME, HEARTBEAT) within a few
   seconds of collector time, the worker works through them, and its resident memory is read while every one of
   them is open; the worker is restarted and the time until it restored every partition is measured.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.telemetry import scrape as telemetry_metrics
from common import topics
from common.avro import AvroCodec
from common.kafka import consumer, durable_producer
from common.qoe.views import to_ms
from common.settings import Settings, load_settings, state_dir
from infra.services import Service, faust_worker
from infra.stack import resident_mib
from tests import qoe_simulate as simulate
from tests.scratch import scratch_platform

METRICS_PORT = 9499
CODEC = AvroCodec()


def produce(settings: Settings, events: Iterable[dict[str, Any]]) -> int:
    producer = durable_producer(settings.kafka)
    topic = settings.topic(topics.PLAYBACK_TELEMETRY)
    count = 0
    for event in events:
        value = CODEC.encode("PlaybackEvent", event)
        while True:
            try:
                producer.produce(topic, key=event["session_id"].encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        count += 1
    assert producer.flush(120) == 0
    return count


def bare_consumer_rate(settings: Settings, expected: int) -> float:
    """Messages/s of a confluent-kafka consumer that decodes each message and does nothing else."""
    reader = consumer(f"bench-bare-{uuid.uuid4().hex[:8]}", settings.kafka)
    reader.subscribe([settings.topic(topics.PLAYBACK_TELEMETRY)])
    seen = 0
    began = None
    while seen < expected:
        for message in reader.consume(num_messages=5000, timeout=1.0):
            if message.error():
                continue
            began = began or time.monotonic()
            CODEC.decode(message.value() or b"", "PlaybackEvent")
            seen += 1
    elapsed = time.monotonic() - (began or time.monotonic())
    reader.close()
    return seen / elapsed


def faust_consume_rate(settings: Settings, expected: int) -> str:
    """What bench/faust_consume.py prints: Faust's consume path alone on the same messages."""
    env = {
        **os.environ,
        "BENCH_TOPIC": settings.topic(topics.PLAYBACK_TELEMETRY),
        "BENCH_EXPECTED": str(expected),
        "FAUST_DATADIR": str(Path(state_dir()) / "bench-faust-consume"),
    }
    command = [sys.executable, "-m", "faust", "-A", "bench.faust_consume", "worker", "--without-web", "-l", "warn"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    # Faust sends a worker's stdout to its log (stderr), so the line is looked for in both.
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "faust consume:" in line]
    return lines[-1].split("faust consume: ", 1)[1].strip() if lines else f"failed ({done.stderr[-300:]})"


def scrape() -> dict[str, float]:
    """The bench worker's metrics; empty when it does not answer."""
    try:
        return telemetry_metrics(f"http://127.0.0.1:{METRICS_PORT}/metrics")
    except OSError:
        return {}


def processed(samples: dict[str, float]) -> float:
    return sum(v for k, v in samples.items() if k.startswith("qoe_events_total{"))


def flushes(samples: dict[str, float]) -> float:
    return samples.get("qoe_flushes_total", 0.0)


def work_through(base: float, expected: float, timeout_s: float = 1800) -> tuple[float, float, float]:
    """Poll the worker until it processed ``expected`` events more than ``base`` and flushed after that; returns
    (seconds from its first event to its last, seconds to the flush that made the last durable, wall time)."""
    first = last = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        samples = scrape()
        if not samples:
            raise RuntimeError("the QoE worker stopped answering (see its log under .state/bench-qoe)")
        done = processed(samples) - base
        now = time.monotonic()
        if done > 0 and first is None:
            first = now
        if done >= expected:
            last = now
            # Durable at the end of the last flush: the flush counter stops moving once nothing is pending.
            count, changed = flushes(samples), time.monotonic()
            while time.monotonic() - changed < 2.0 and time.monotonic() < deadline:
                time.sleep(0.05)
                if (current := flushes(scrape())) != count:
                    count, changed = current, time.monotonic()
            assert first is not None
            return last - first, changed - first, time.time()
        time.sleep(0.05)
    raise TimeoutError(f"the worker processed {processed(scrape()) - base:.0f} of {expected:.0f} events")


def open_sessions(count: int, prefix: str) -> list[dict[str, Any]]:
    """``count`` sessions that each open a view, all received within a few seconds (so none expires)."""
    now = datetime.now(UTC)
    events = []
    for n in range(count):
        session = f"{prefix}-{n}"
        client = now - timedelta(seconds=5)
        base = {"session_id": session, "video_id": f"video-{n % 500}", "device_class": "desktop", "source": "SDK"}
        steps: tuple[tuple[str, dict[str, Any]], ...] = (
            ("PLAY_REQUESTED", {}),
            ("FIRST_FRAME", {"rendition": "720p", "bitrate_kbps": 3000, "video_width": 1280, "video_height": 720}),
            ("HEARTBEAT", {"playhead_s": 2.0, "bytes": 750_000}),
        )
        for seq, (kind, extra) in enumerate(steps):
            events.append(
                {
                    **base,
                    **extra,
                    "seq": seq,
                    "event_type": kind,
                    "client_ts": client + timedelta(milliseconds=800 * seq),
                    "received_ts": now,
                }
            )
    return events


def partitions_restored(samples: dict[str, float]) -> float:
    return samples.get("qoe_restore_seconds_count", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=6000, help="simulated players in the backlog")
    parser.add_argument("--open-sessions", type=int, default=100_000)
    args = parser.parse_args()
    measure(args.sessions, args.open_sessions)


def measure(players: int, opening: int) -> None:
    """Print the figures of the module docstring for ``players`` in the backlog and ``opening`` open sessions."""
    for settings in scratch_platform(load_settings(), "bench-qoe"):
        sessions = simulate.generate(
            int(time.time()), players, start_ms=to_ms(datetime.now(UTC)) - 1_800_000, spread_ms=1_500_000
        )
        deliveries = simulate.deliveries(sessions, 7, duplicate_rate=0.05, max_delay_ms=2000)
        count = produce(settings, (d.event for d in deliveries))
        print(f"backlog: {count:,} events of {players:,} simulated players on playback.telemetry", flush=True)
        bare = bare_consumer_rate(settings, count)
        print(f"bare confluent-kafka consumer, decode only: {bare:,.0f} events/s", flush=True)
        print(f"Faust agent, noack_take + decode + ack only: {faust_consume_rate(settings, count)}", flush=True)

        home = Path(state_dir()) / "bench-qoe"
        env = {"TOPIC_PREFIX": settings.topic_prefix, "CASSANDRA_KEYSPACE": settings.cassandra.keyspace}
        worker: Service = faust_worker("bench-qoe-worker", "qoe", METRICS_PORT, home, env)
        worker.start()
        try:
            worker.wait_ready()
            processing_s, durable_s, _ = work_through(0.0, count)
            rate = count / processing_s
            print(
                f"QoE worker on the backlog: {rate:,.0f} events/s processed ({count / durable_s:,.0f} events/s to"
                f" durable rows), {rate / bare:.2f} of the bare consumer",
                flush=True,
            )

            if not opening:
                return
            # A fresh process for the memory figure: what the backlog's windows took is not held against it.
            worker.stop()
            worker.start()
            worker.wait_ready()
            opened = open_sessions(opening, f"open-{uuid.uuid4().hex[:6]}")
            began = time.monotonic()
            base = processed(scrape())
            produce(settings, opened)
            processing_s, durable_s, _ = work_through(base, len(opened))
            pid = worker.pid()
            rss = resident_mib(pid) if pid else float("nan")
            held = scrape().get("qoe_sessions_held", 0.0)
            print(
                f"{opening:,} sessions opening views ({len(opened):,} events):"
                f" {len(opened) / processing_s:,.0f} events/s;"
                f" RSS of the worker holding {held:,.0f} sessions: {rss:,.0f} MiB"
                f" ({time.monotonic() - began:.0f} s after the first was produced)",
                flush=True,
            )
            worker.stop()
            restarted = time.monotonic()
            worker.start()
            partitions = len(
                consumer("bench-meta", settings.kafka)
                .list_topics(settings.topic(topics.PLAYBACK_TELEMETRY), timeout=10)
                .topics[settings.topic(topics.PLAYBACK_TELEMETRY)]
                .partitions
            )
            while partitions_restored(scrape()) < partitions:
                time.sleep(0.2)
            print(
                f"restart to caught up (process start, group join, {partitions} partitions restored from their"
                f" checkpoints): {time.monotonic() - restarted:.1f} s; RSS after: "
                f"{resident_mib(worker.pid() or 0):,.0f} MiB"
            )
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
