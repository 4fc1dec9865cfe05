"""Data-parallel launch for torch benchmarks: one torchrun worker per device, rank 0 reports.

A DDP benchmark's ``__main__`` calls :func:`relaunch_under_torchrun` (which replaces the process
by torchrun when more than one device is asked for), then :func:`silence_other_ranks`, and its
training function :func:`init_distributed`. Without torchrun all three leave a single process be.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def relaunch_under_torchrun(devices: int) -> None:
    """Replace this process by torchrun with one worker per device, unless already a worker.

    ``devices`` < 0 means every visible device of the planned vendor (at least one).
    """
    if "LOCAL_RANK" in os.environ:
        return
    if devices < 0:
        from .device import device_count

        devices = max(device_count(), 1)
    if devices > 1:
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}"]
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
