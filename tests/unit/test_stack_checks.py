"""The stack's preflight checks name what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

import infra.stack as stack


def test_no_java_17_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only a Java 25 on the machine: Cassandra cannot run on it.
    monkeypatch.setattr(stack, "java_major_version", lambda java: 25)
    with pytest.raises(stack.StackError, match="no Java 17 found"):
        stack.find_java17()


def test_no_maven_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(stack.StackError, match="Maven \\(mvn\\) not found"):
        stack.require_maven()


def test_failed_fetch_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VIDPLAT_CACHE_DIR", str(tmp_path))
    fake_mvn = tmp_path / "mvn"
    fake_mvn.write_text("#!/bin/sh\necho 'Could not resolve dependencies: repo1.maven.org unreachable'\nexit 1\n")
    fake_mvn.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(stack.StackError, match="(?s)fetching kafka jars from Maven Central failed.*unreachable"):
        stack.fetch("kafka")


def test_kafka_cluster_id_has_kafkas_format() -> None:
    cluster_id = stack.kafka_cluster_id()
    assert len(cluster_id) == 22 and "=" not in cluster_id
