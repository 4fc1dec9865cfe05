"""Data-parallel and multi-node launch for torch benchmarks: torchrun workers, rank 0 reports.

A DDP benchmark's ``__main__`` calls ``benchkit.ddp_main`` (lifecycle.py), which runs
:func:`relaunch_under_torchrun` (replacing the process by torchrun when more than one device or
more than one node is asked for), then :func:`silence_other_ranks`; its training function calls
:func:`init_distributed`. Without torchrun all three leave a single process be.

Across nodes the orchestrator's backend starts this program once per node with the
``MBCTL_*`` variables below (docs/multinode.md); they become torchrun's *static* rendezvous,
as Milabench launches it: node 0 hosts the store at the master address, every node knows its
rank, no c10d rendezvous (whose store host is chosen by a race and which ignores ranks).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Nodes of the job (an integer ≥ 1); absent or 1: a single-node job.
NNODES = "MBCTL_NNODES"
#: This node's index, 0 to NNODES-1; node 0 hosts the rendezvous store.
NODE_RANK = "MBCTL_NODE_RANK"
#: Address (host name or IP) of node 0, reachable from every node.
MASTER_ADDR = "MBCTL_MASTER_ADDR"
#: TCP port of the rendezvous store on node 0.
MASTER_PORT = "MBCTL_MASTER_PORT"
#: Every variable a backend sets on each node of a multi-node job.
MULTINODE_ENV = (NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT)
#: Optional: seconds the nodes wait for each other at the rendezvous (torchrun's default, 600,
#: when unset); a cluster backend sets it to cover image pulls on the slower nodes.
RDZV_TIMEOUT = "MBCTL_RDZV_TIMEOUT"


@dataclass(frozen=True)
class NodeLayout:
    """Where this process sits in a multi-node job, read from the ``MBCTL_*`` variables."""

    nnodes: int
    node_rank: int
    master_addr: str
    master_port: int
    timeout: int | None = None


def node_layout(environ: Mapping[str, str] | None = None) -> NodeLayout | None:
    """The job's node layout, or None for a single-node job; ValueError naming a bad variable."""
    env = os.environ if environ is None else environ
    if env.get(NNODES, "1") == "1":
        return None
    missing = [name for name in MULTINODE_ENV if not env.get(name)]
    if missing:
        raise ValueError(f"{NNODES}={env.get(NNODES)} but {', '.join(missing)} unset")
    numbers = {}
    for name in (NNODES, NODE_RANK, MASTER_PORT):
        if not env[name].isdigit():
            raise ValueError(f"{name}={env[name]!r}: expected a non-negative integer")
        numbers[name] = int(env[name])
    if not 0 <= numbers[NODE_RANK] < numbers[NNODES]:
        raise ValueError(f"{NODE_RANK}={numbers[NODE_RANK]} outside 0..{numbers[NNODES] - 1}")
    if not 0 < numbers[MASTER_PORT] < 65536:
        raise ValueError(f"{MASTER_PORT}={numbers[MASTER_PORT]} is not a TCP port")
    timeout = env.get(RDZV_TIMEOUT)
    if timeout is not None and not timeout.isdigit():
        raise ValueError(f"{RDZV_TIMEOUT}={timeout!r}: expected seconds (an integer)")
    return NodeLayout(
        numbers[NNODES],
        numbers[NODE_RANK],
        env[MASTER_ADDR],
        numbers[MASTER_PORT],
        int(timeout) if timeout else None,
    )


def local_devices(devices: int) -> int:
    """Workers on this node: ``devices``, or every visible device of the planned vendor (at
    least one) if < 0."""
    if devices >= 0:
        return devices
    from .device import device_count

    return max(device_count(), 1)


def torchrun_arguments(devices: int, layout: NodeLayout | None) -> list[str] | None:
    """torchrun's options for ``devices`` workers per node, or None when one process will do."""
    if layout is not None:
        return [
            f"--nnodes={layout.nnodes}",
            f"--node-rank={layout.node_rank}",
            f"--master-addr={layout.master_addr}",
            f"--master-port={layout.master_port}",
            "--rdzv-backend=static",
            *([f"--rdzv-conf=timeout={layout.timeout}"] if layout.timeout else []),
            f"--nproc-per-node={max(devices, 1)}",
        ]
    if devices > 1:
        return ["--standalone", f"--nproc-per-node={devices}"]
    return None


def relaunch_under_torchrun(devices: int) -> None:
    """Replace this process by torchrun with one worker per device, unless already a worker.

    ``devices`` < 0 means every visible device of the planned vendor (at least one). In a multi-node job
    (``MBCTL_NNODES`` > 1) torchrun always runs, with static rendezvous at node 0.
    """
    if "LOCAL_RANK" in os.environ:
        return
    arguments = torchrun_arguments(local_devices(devices), node_layout())
    if arguments is not None:
        command = ["-m", "torch.distributed.run", *arguments]
        os.execv(sys.executable, [sys.executable, *command, *sys.argv])


def init_distributed(requested: str) -> tuple[Any, int]:
    """The torch device of this rank and the world size (1 without torchrun)."""
    from .device import dist_backend, set_rank_device, torch_device

    if "LOCAL_RANK" not in os.environ:
        return torch_device(requested), 1
    import torch

    device = set_rank_device(torch_device(requested), int(os.environ["LOCAL_RANK"]))
    torch.distributed.init_process_group(dist_backend(device))
    return device, torch.distributed.get_world_size()


def silence_other_ranks() -> bool:
    """Send stdout of ranks other than 0 to /dev/null; True on rank 0.

    Only rank 0 speaks the metrics protocol, or every event would be counted once per rank.
    """
    if int(os.environ.get("RANK", "0")) > 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
        return False
    return True
