"""Reconcile the Kafka cluster with topics.yaml.

    python -m infra.topics            # apply: create, raise partitions, align configs; report the rest
    python -m infra.topics --dry-run  # print the plan only

The plan is computed by a pure function (`plan_changes`) from the desired spec and what the cluster
describes, then applied with confluent-kafka's AdminClient. What Kafka cannot do in place (fewer
partitions, another replication factor) is reported, never forced. Topics that are not in topics.yaml
(Faust changelogs, consumer offsets) are left alone. What topics.yaml asks for (`TopicSpec`, `load_specs`) is
read by common/topics.py, which the workers and producers use as well.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from common.kafka import admin_client
from common.settings import Settings, load_settings
from common.topics import TopicSpec, load_specs

ADMIN_TIMEOUT_S = 30


@dataclass(frozen=True)
class ActualTopic:
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass
class Plan:
    create: list[TopicSpec] = field(default_factory=list)
    add_partitions: dict[str, int] = field(default_factory=dict)
    alter_config: dict[str, dict[str, str]] = field(default_factory=dict)
    cannot_change: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.create or self.add_partitions or self.alter_config)

    def describe(self) -> list[str]:
        lines = [f"create {t.name} (partitions={t.partitions}, rf={t.replication_factor})" for t in self.create]
        lines += [f"raise partitions of {name} to {count}" for name, count in self.add_partitions.items()]
        for name, changes in self.alter_config.items():
            lines += [f"set {name} {key}={value}" for key, value in sorted(changes.items())]
        lines += [f"cannot change: {problem}" for problem in self.cannot_change]
        return lines


def plan_changes(desired: list[TopicSpec], actual: dict[str, ActualTopic]) -> Plan:
    plan = Plan()
    for spec in desired:
        current = actual.get(spec.name)
        if current is None:
            plan.create.append(spec)
            continue
        if spec.partitions > current.partitions:
            plan.add_partitions[spec.name] = spec.partitions
        elif spec.partitions < current.partitions:
            plan.cannot_change.append(
                f"{spec.name} has {current.partitions} partitions, topics.yaml asks for {spec.partitions}; "
                "Kafka cannot remove partitions (create a new topic and migrate)"
            )
        if spec.replication_factor != current.replication_factor:
            plan.cannot_change.append(
                f"{spec.name} has replication factor {current.replication_factor}, topics.yaml asks for "
                f"{spec.replication_factor}; change it with a partition reassignment"
            )
        differing = {key: value for key, value in spec.config.items() if current.config.get(key) != value}
        if differing:
            plan.alter_config[spec.name] = differing
    return plan


def describe_cluster(admin: AdminClient, names: list[str]) -> dict[str, ActualTopic]:
    metadata = admin.list_topics(timeout=ADMIN_TIMEOUT_S)
    present = [name for name in names if name in metadata.topics]
    if not present:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in present]
    configs = {
        resource.name: {entry.name: entry.value for entry in future.result(ADMIN_TIMEOUT_S).values()}
        for resource, future in admin.describe_configs(resources).items()
    }
    actual = {}
    for name in present:
        partitions = metadata.topics[name].partitions
        replication = len(next(iter(partitions.values())).replicas) if partitions else 0
        actual[name] = ActualTopic(len(partitions), replication, configs[name])
    return actual


def apply_plan(admin: AdminClient, plan: Plan) -> None:
    futures: dict[str, Any] = {}
    if plan.create:
        new_topics = [
            NewTopic(spec.name, spec.partitions, spec.replication_factor, config=spec.config) for spec in plan.create
        ]
        futures.update(admin.create_topics(new_topics, operation_timeout=ADMIN_TIMEOUT_S))
    if plan.add_partitions:
        requests = [NewPartitions(name, count) for name, count in plan.add_partitions.items()]
        futures.update(admin.create_partitions(requests, operation_timeout=ADMIN_TIMEOUT_S))
    if plan.alter_config:
        # Incremental: only the keys that differ are set; other overrides stay as they are.
        resources = [
            ConfigResource(
                ConfigResource.Type.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                    for key, value in changes.items()
                ],
            )
            for name, changes in plan.alter_config.items()
        ]
        for resource, future in admin.incremental_alter_configs(resources).items():
            futures[f"config of {resource.name}"] = future
    errors = []
    for what, future in futures.items():
        try:
            future.result(ADMIN_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - collect every failure, report them together
            errors.append(f"{what}: {exc}")
    if errors:
        raise RuntimeError("topic reconciliation failed:\n" + "\n".join(errors))
    wait_until_visible(admin, plan)


def wait_until_visible(admin: AdminClient, plan: Plan) -> None:
    """Creation is acknowledged before every listener's metadata shows it; wait so callers can use it."""
    expected = {spec.name: spec.partitions for spec in plan.create} | plan.add_partitions
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    while expected and time.monotonic() < deadline:
        topics = admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        expected = {
            name: count
            for name, count in expected.items()
            if name not in topics or len(topics[name].partitions) < count
        }
        if expected:
            time.sleep(0.2)
    if expected:
        raise RuntimeError(f"topics not visible in cluster metadata after {ADMIN_TIMEOUT_S}s: {sorted(expected)}")


def reconcile(settings: Settings | None = None, dry_run: bool = False) -> Plan:
    settings = settings or load_settings()
    specs = load_specs(settings)
    admin = admin_client(settings.kafka)
    plan = plan_changes(specs, describe_cluster(admin, [spec.name for spec in specs]))
    if not dry_run and not plan.empty:
        apply_plan(admin, plan)
    return plan


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.topics", description=__doc__.split("\n")[1])
    parser.add_argument("--dry-run", action="store_true", help="print the plan without applying it")
    args = parser.parse_args(argv)
    plan = reconcile(dry_run=args.dry_run)
    lines = plan.describe()
    for line in lines:
        print(f"[topics] {line}")
    if plan.empty:
        print("[topics] no changes: the cluster matches topics.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
