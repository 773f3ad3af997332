"""The topic reconciler's plan, computed from desired and actual state without a broker."""

from __future__ import annotations

import dataclasses

import faust
import pytest

from common import topics
from common.settings import KafkaSettings, Settings
from common.topics import TopicSpec, load_specs
from infra.topics import ActualTopic, plan_changes


def spec(name: str = "t", partitions: int = 3, rf: int = 1, **config: str) -> TopicSpec:
    return TopicSpec(name, partitions, rf, {"retention.ms": "1000", **config}, "key", "Value")


def test_missing_topic_is_created() -> None:
    plan = plan_changes([spec()], {})
    assert [t.name for t in plan.create] == ["t"]
    assert not plan.empty


def test_matching_topic_needs_nothing() -> None:
    plan = plan_changes([spec()], {"t": ActualTopic(3, 1, {"retention.ms": "1000", "other": "x"})})
    assert plan.empty
    assert plan.describe() == []


def test_more_partitions_are_added_fewer_are_reported() -> None:
    plan = plan_changes(
        [spec("up", partitions=6), spec("down", partitions=2)],
        {
            "up": ActualTopic(3, 1, {"retention.ms": "1000"}),
            "down": ActualTopic(4, 1, {"retention.ms": "1000"}),
        },
    )
    assert plan.add_partitions == {"up": 6}
    assert len(plan.cannot_change) == 1 and "down has 4 partitions" in plan.cannot_change[0]


def test_only_differing_config_keys_are_altered() -> None:
    plan = plan_changes(
        [spec(**{"cleanup.policy": "compact"})],
        {"t": ActualTopic(3, 1, {"retention.ms": "1000", "cleanup.policy": "delete"})},
    )
    assert plan.alter_config == {"t": {"cleanup.policy": "compact"}}


def test_replication_factor_change_is_reported_not_forced() -> None:
    plan = plan_changes([spec(rf=3)], {"t": ActualTopic(3, 1, {"retention.ms": "1000"})})
    assert plan.empty
    assert "replication factor 1" in plan.cannot_change[0]


def test_topics_yaml_covers_every_designed_topic_with_its_dlq() -> None:
    specs = {s.name: s for s in load_specs(Settings())}
    designed = [
        "video.uploaded",
        "video.transcode-requested",
        "video.segment-ready",
        "video.lifecycle",
        "playback.telemetry",
        "engagement.comments",
        "engagement.ratings",
        "engagement.views",
    ]
    for name in designed:
        assert name in specs
        assert specs[f"{name}.dlq"].value_schema == "DeadLetter"
    assert specs["video.lifecycle"].key == "video_id"
    assert specs["playback.telemetry"].key == "session_id"


def test_every_topic_name_of_the_code_is_declared_with_its_partitions() -> None:
    """common/topics.py is where the code finds a topic: each of its names is a topic of topics.yaml."""
    specs = {s.name: s for s in load_specs(Settings())}
    names = [value for key, value in vars(topics).items() if key.isupper() and isinstance(value, str)]
    assert len(names) == 11
    for name in names:
        assert name in specs, f"{name} is not in topics.yaml"
        assert topics.partitions(name) == specs[name].partitions


@pytest.mark.parametrize(("replication", "min_isr"), [(1, "1"), (3, "2")])
def test_min_insync_replicas_follows_replication(replication: int, min_isr: str) -> None:
    settings = dataclasses.replace(
        Settings(), kafka=dataclasses.replace(KafkaSettings(), default_replication=replication)
    )
    for topic in load_specs(settings):
        assert topic.replication_factor == replication
        assert topic.config["min.insync.replicas"] == min_isr


def test_topic_prefix_is_applied() -> None:
    settings = dataclasses.replace(Settings(), topic_prefix="test-abc.")
    assert all(s.name.startswith("test-abc.") for s in load_specs(settings))


def test_every_faust_table_changelog_and_internal_topic_is_declared() -> None:
    """Each table's changelog and each internal topic of the workers exists before they start (topics.yaml)."""
    import processors.recommend
    from processors.app import ROLE_MODULES

    specs = {s.name: s for s in load_specs(Settings())}
    role_of = {module: role for role, modules in ROLE_MODULES.items() for module in modules}
    changelogs = []
    for module in (processors.recommend,):
        for table in [value for value in vars(module).values() if isinstance(value, faust.Table)]:
            name = f"vidplat-{role_of[module.__name__]}-{table.name}-changelog"
            assert name in specs, f"{name} (changelog of table {table.name}) is not in topics.yaml"
            assert specs[name].partitions == table.partitions, f"{name}: {specs[name].partitions} partitions"
            assert specs[name].config["cleanup.policy"] == "compact"
            changelogs.append(name)
    assert len(changelogs) == 4
    for topic in (processors.recommend.views_by_viewer_topic, processors.recommend.co_watches_topic):
        [name] = topic.topics
        assert specs[name].partitions == topic.partitions
