"""The reconciler against the real broker, on a fresh topic prefix per test."""

from __future__ import annotations

import dataclasses

import pytest

from common.kafka import admin_client
from common.settings import Settings
from infra.topics import apply_plan, describe_cluster, load_specs, plan_changes, reconcile

pytestmark = pytest.mark.integration


@pytest.fixture
def prefixed(live_servers: Settings, unique: str) -> Settings:
    return dataclasses.replace(live_servers, topic_prefix=f"test-{unique}.")


def test_first_run_creates_everything_second_run_changes_nothing(prefixed: Settings) -> None:
    first = reconcile(prefixed)
    assert len(first.create) == len(load_specs(prefixed))
    second = reconcile(prefixed)
    assert second.empty, second.describe()
    assert second.cannot_change == []


def test_drift_is_repaired_and_what_cannot_change_is_reported(prefixed: Settings) -> None:
    reconcile(prefixed)
    admin = admin_client(prefixed.kafka)
    specs = load_specs(prefixed)
    uploaded = next(s for s in specs if s.name.endswith("video.uploaded"))
    telemetry = next(s for s in specs if s.name.endswith("playback.telemetry"))
    # Someone changed retention by hand, and the file now asks for more partitions on one topic
    # and fewer on another.
    drifted = [
        dataclasses.replace(uploaded, partitions=uploaded.partitions + 2),
        dataclasses.replace(
            telemetry,
            partitions=telemetry.partitions - 4,
            config={**telemetry.config, "retention.ms": "3600000"},
        ),
    ]
    plan = plan_changes(drifted, describe_cluster(admin, [s.name for s in drifted]))
    assert plan.add_partitions == {uploaded.name: uploaded.partitions + 2}
    assert plan.alter_config == {telemetry.name: {"retention.ms": "3600000"}}
    assert len(plan.cannot_change) == 1
    apply_plan(admin, plan)

    after = describe_cluster(admin, [s.name for s in drifted])
    assert after[uploaded.name].partitions == uploaded.partitions + 2
    assert after[telemetry.name].config["retention.ms"] == "3600000"
    assert after[telemetry.name].partitions == telemetry.partitions  # never reduced
    # Back to topics.yaml: retention restored, the extra partitions stay (and are reported).
    restored = reconcile(prefixed)
    assert restored.alter_config == {telemetry.name: {"retention.ms": telemetry.config["retention.ms"]}}
    assert any(uploaded.name in problem for problem in restored.cannot_change)
