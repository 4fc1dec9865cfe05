"""Fixtures of the Kubernetes layer: the fake API server and backends pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakeapi import Cluster, FakeApiServer

from orchestrator.backends.base import RunContext


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def cluster(api: FakeApiServer) -> Cluster:
    return api.cluster


@pytest.fixture
def make_backend(api: FakeApiServer) -> Callable[..., Any]:
    """A KubernetesBackend on the fake server (fast polling), with the given K8sSettings fields."""
    from kubernetes import client

    from orchestrator.backends.kubernetes import K8sSettings, KubernetesBackend

    def make(*, keep: bool = False, **settings: Any) -> KubernetesBackend:
        return KubernetesBackend(
            K8sSettings(**settings),
            keep=keep,
            api_client=client.ApiClient(client.Configuration(host=api.url)),
            poll_interval=0.02,
            watch_seconds=1,
        )

    return make


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    return RunContext(
        run_id="20250101-000000-k8s-test-abcd",
        run_dir=tmp_path,
        data_dir=tmp_path,
        benchmarks_root=tmp_path,
    )
