"""benchkit's side of the multi-node contract: MBCTL_* variables → torchrun static rendezvous."""

from __future__ import annotations

import os
import sys

import pytest
from benchkit import distributed
from benchkit.distributed import (
    MASTER_ADDR,
    MASTER_PORT,
    MULTINODE_ENV,
    NNODES,
    NODE_RANK,
    NodeLayout,
    node_layout,
    relaunch_under_torchrun,
    torchrun_arguments,
)

NODE1 = {NNODES: "2", NODE_RANK: "1", MASTER_ADDR: "job-0.svc", MASTER_PORT: "29500"}


def test_the_contract_names_four_variables() -> None:
    assert MULTINODE_ENV == (
        "MBCTL_NNODES",
        "MBCTL_NODE_RANK",
        "MBCTL_MASTER_ADDR",
        "MBCTL_MASTER_PORT",
    )


def test_single_node_without_variables_or_with_one_node() -> None:
    assert node_layout({}) is None
    assert node_layout({NNODES: "1", NODE_RANK: "0"}) is None
    assert node_layout(NODE1) == NodeLayout(2, 1, "job-0.svc", 29500)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {NNODES: "2"},
            "MBCTL_NNODES=2 but MBCTL_NODE_RANK, MBCTL_MASTER_ADDR, MBCTL_MASTER_PORT unset",
        ),
        ({**NODE1, NODE_RANK: "2"}, "MBCTL_NODE_RANK=2 outside 0..1"),
        (
            {**NODE1, MASTER_PORT: "http"},
            "MBCTL_MASTER_PORT='http': expected a non-negative integer",
        ),
        ({**NODE1, MASTER_PORT: "70000"}, "MBCTL_MASTER_PORT=70000 is not a TCP port"),
    ],
)
def test_bad_layouts_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(
        ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"
    ):
        node_layout(env)


def test_torchrun_arguments_are_static_rendezvous_across_nodes() -> None:
    assert torchrun_arguments(1, None) is None
    assert torchrun_arguments(4, None) == ["--standalone", "--nproc-per-node=4"]
    # even one device per node needs torchrun when the job spans nodes; never c10d
    assert torchrun_arguments(1, node_layout(NODE1)) == [
        "--nnodes=2",
        "--node-rank=1",
        "--master-addr=job-0.svc",
        "--master-port=29500",
        "--rdzv-backend=static",
        "--nproc-per-node=1",
    ]


def test_relaunch_on_a_node_execs_torchrun_with_the_node_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: execs.append(argv))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    for name, value in NODE1.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["main.py", "--devices", "8"])
    relaunch_under_torchrun(8)
    assert execs == [
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            *torchrun_arguments(8, node_layout(NODE1)),  # type: ignore[misc]
            "main.py",
            "--devices",
            "8",
        ]
    ]
    monkeypatch.setenv("LOCAL_RANK", "0")  # a worker torchrun started: stays itself
    relaunch_under_torchrun(8)
    assert len(execs) == 1
    assert distributed.local_devices(3) == 3
