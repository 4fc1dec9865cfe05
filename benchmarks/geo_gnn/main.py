"""Molecular-property training throughput (molecules/s) of torch-geometric's PNA and DimeNet, PCQM4Mv2-shaped data.

Regression of the HOMO-LUMO gap (L1 loss on the normalised target, Adam, cosine schedule), as
Milabench's geo_gnn benchmark trains it: ``--model PNA`` is torch-geometric's ``PNA`` of 64
layers of 64 channels (one tower, mean/min/max/std aggregators and degree scalers) whose last
layer outputs the one target channel per atom, max-pooled per molecule (4.1M parameters);
``--model DimeNet`` is DimeNet (6 interaction blocks, 64 channels) over atomic numbers and 3-D
coordinates (``DimeNetPlusPlus`` for the lighter variant). Batches are collated from the
prepared molecules by torch-geometric's DataLoader in the timed loop.

DimeNet needs a radius graph and angle triplets, which torch-geometric computes with compiled
extensions (pyg-lib, torch-sparse) that have no build for every torch and vendor; when they are
missing, both are computed here with plain torch operations (reported in a ``meta`` event).
"""

from __future__ import annotations

import argparse

import benchkit
import data
import numpy as np
import torch
import torch_geometric
import torch_geometric.typing
from torch import nn
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader
from torch_geometric.nn import global_max_pool
from torch_geometric.nn.models import PNA, DimeNet, DimeNetPlusPlus, dimenet
from torch_geometric.utils import degree


def radius_graph(
    pos: torch.Tensor, r: float, batch: torch.Tensor, max_num_neighbors: int = 32, **_: object
) -> torch.Tensor:
    """Edges (source, target) between atoms of one molecule closer than ``r``, no self-loops.

    Pairs are enumerated within each molecule only (molecules have at most 30 atoms here), so the
    neighbour cap of torch-cluster never binds and is not applied.
    """
    counts = torch.bincount(batch)
    starts = torch.cumsum(counts, 0) - counts
    sizes = counts[batch]  # per atom: atoms in its molecule
    target = torch.arange(batch.numel(), device=pos.device).repeat_interleave(sizes)
    offsets = torch.arange(int(sizes.sum()), device=pos.device) - (
        torch.cumsum(sizes, 0) - sizes
    ).repeat_interleave(sizes)
    source = starts[batch].repeat_interleave(sizes) + offsets
    keep = (source != target) & ((pos[source] - pos[target]).norm(dim=-1) < r)
    return torch.stack([source[keep], target[keep]])


def triplets(edge_index: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, ...]:
    """DimeNet's (k -> j -> i) angle triplets, the same output as torch-geometric's own."""
    row, col = edge_index  # j -> i
    order = torch.argsort(col)
    incoming = torch.bincount(col, minlength=num_nodes)
    first_in = torch.cumsum(incoming, 0) - incoming
    per_edge = incoming[row]  # edges k -> j that end where edge j -> i starts
    idx_ji = torch.arange(row.numel(), device=row.device).repeat_interleave(per_edge)
    rank = torch.arange(int(per_edge.sum()), device=row.device) - (
        torch.cumsum(per_edge, 0) - per_edge
    ).repeat_interleave(per_edge)
    idx_kj = order[first_in[row].repeat_interleave(per_edge) + rank]
    idx_i, idx_j, idx_k = col[idx_ji], row[idx_ji], row[idx_kj]
    mask = idx_i != idx_k
    return col, row, idx_i[mask], idx_j[mask], idx_k[mask], idx_kj[mask], idx_ji[mask]


def molecules(args: argparse.Namespace) -> list[Data]:
    arrays = np.load(benchkit.require_dataset(data.params(args)) / "molecules.npz")
    atom_ends, bond_ends = np.cumsum(arrays["atoms"]), np.cumsum(arrays["bonds"])
    x, pos, edges, y = (torch.from_numpy(arrays[k]) for k in ("x", "pos", "edge_index", "y"))
    out = []
    for i in range(len(y)):
        a0, a1 = atom_ends[i] - arrays["atoms"][i], atom_ends[i]
        b0, b1 = bond_ends[i] - arrays["bonds"][i], bond_ends[i]
        out.append(
            Data(
                x=x[a0:a1].long(), pos=pos[a0:a1], edge_index=edges[:, b0:b1].long(), y=y[i : i + 1]
            )
        )
    return out


def degree_histogram(dataset: list[Data]) -> torch.Tensor:
    """In-degree histogram of the training graphs, which PNA's scalers normalise by."""
    degrees = [degree(d.edge_index[1], num_nodes=d.num_nodes, dtype=torch.long) for d in dataset]
    return torch.bincount(torch.cat(degrees))


class PnaRegressor(nn.Module):
    """PNA whose last layer gives one channel per atom, max-pooled per molecule (Milabench's)."""

    def __init__(self, hidden: int, layers: int, towers: int, deg: torch.Tensor) -> None:
        super().__init__()
        self.pna = PNA(
            in_channels=data.FEATURES,
            hidden_channels=hidden,
            num_layers=layers,
            out_channels=1,
            towers=towers,
            aggregators=["mean", "min", "max", "std"],
            scalers=["identity", "amplification", "attenuation"],
            deg=deg,
        )

    def forward(self, batch: Data) -> torch.Tensor:
        nodes = self.pna(batch.x.float(), batch.edge_index, batch=batch.batch)
        return global_max_pool(nodes, batch.batch).squeeze(-1)


class DimeNetRegressor(nn.Module):
    def __init__(self, kind: str, hidden: int, blocks: int, spherical: int, radial: int) -> None:
        super().__init__()
        common = {
            "hidden_channels": hidden,
            "out_channels": 1,
            "num_blocks": blocks,
            "num_spherical": spherical,
            "num_radial": radial,
            "cutoff": 10.0,
            "envelope_exponent": 5,
            "num_before_skip": 1,
            "num_after_skip": 2,
            "num_output_layers": 3,
        }
        if kind == "DimeNet":
            self.net = DimeNet(num_bilinear=8, **common)
        else:
            self.net = DimeNetPlusPlus(
                int_emb_size=64, basis_emb_size=8, out_emb_channels=256, **common
            )

    def forward(self, batch: Data) -> torch.Tensor:
        return self.net(batch.x[:, 0], batch.pos, batch.batch).squeeze(-1)


def make_model(args: argparse.Namespace, dataset: list[Data]) -> nn.Module:
    if args.model == "PNA":
        return PnaRegressor(args.hidden, args.layers or 64, args.towers, degree_histogram(dataset))
    return DimeNetRegressor(args.model, args.hidden, args.layers or 6, args.spherical, args.radial)


def train(args: argparse.Namespace) -> None:
    torch.manual_seed(args.seed)
    device = benchkit.torch_device(args.device)
    if args.model != "PNA" and not torch_geometric.typing.WITH_RADIUS:
        dimenet.radius_graph = radius_graph
        dimenet.triplets = triplets
        benchkit.emit(
            "meta", kind="graph-ops", data="radius graph and triplets in plain torch (no pyg-lib)"
        )

    dataset = molecules(args)
    targets = torch.cat([d.y for d in dataset])
    mean, std = targets.mean().item(), targets.std().item()
    model = make_model(args, dataset).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    criterion = nn.L1Loss()
    loader = DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=args.epochs * len(loader)
    )
    # torch-geometric batches are not tensors: moved in the loop body, inside the timing.
    steps = benchkit.StepLoop(
        loader, args, device=device, units="molecules/s", optimizer=optimizer, move=False
    )
    for batch in steps:
        batch = batch.to(device, non_blocking=True)
        steps.step(criterion(model(batch), (batch.y - mean) / std))
        schedule.step()


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "geo_gnn", __doc__.splitlines()[0], batch_size=4096, warmup=3, measures=30, every=2
    )
    p.add_argument("--model", choices=["PNA", "DimeNet", "DimeNetPlusPlus"], default="PNA")
    p.add_argument("--hidden", type=int, default=64, help="channels (PNA and DimeNet)")
    p.add_argument("--layers", type=int, help="PNA layers or DimeNet blocks (default: 64, 6)")
    p.add_argument("--towers", type=int, default=1, help="PNA towers (hidden must divide by it)")
    p.add_argument(
        "--spherical",
        type=int,
        default=7,
        help="DimeNet spherical basis size (sympy builds it: slow)",
    )
    p.add_argument("--radial", type=int, default=6, help="DimeNet radial basis size")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes collating graphs")
    p.add_argument(
        "--epochs", type=int, default=20, help="length of the cosine learning-rate schedule"
    )
    p.add_argument("--lr", type=float, default=1e-4)
    data.add_arguments(p)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
