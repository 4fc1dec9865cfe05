"""GFlowNet training throughput (graphs/s): fragment-based molecule generation with trajectory balance.

The algorithm of Recursion's gflownet library (its ``seh_frag`` task, which Milabench's
recursiongfn trains), written here with torch and torch-geometric since that library is not on
PyPI. A molecule is a tree of fragments (72 building blocks, each with attachment points,
generated here with sizes like Bengio et al.'s 2021 set); it is built one action at a time:

- ``stop``; ``add node``: attach a new fragment of one of the 72 kinds to an existing fragment
  (or place the first one); ``set edge``: choose the attachment points a bond uses;
- at most 9 fragments; invalid actions are masked.

Each training step samples ``--batch-size`` trajectories (128) from the current policy, a graph
transformer conditioned on the reward temperature (``--layers`` 4 of ``--width`` 128, two heads;
the sampling copy trails the trained one by ``--sampling-tau``), scores the finished molecules with a
proxy reward model (a message-passing network with fixed random weights standing in for the sEH
binding proxy), and minimises the trajectory balance loss
``(log Z(c) + sum log P_F - beta log R(x) - sum log P_B)^2`` with a uniform backward policy and
beta = 64 (Milabench's constant temperature). The rate counts the states of the step's batch
(graphs the model is trained on), as Milabench's observer counts ``batch.batch_size``.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
from dataclasses import dataclass, field

import benchkit
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import GENConv, TransformerConv, global_mean_pool

MAX_STEMS = 4  # attachment points a fragment may have


# --- the environment ------------------------------------------------------------------------


def fragment_stems(count: int, seed: int) -> list[int]:
    """Attachment points of each fragment kind: most have 1 or 2, a few up to 4 (as in the set)."""
    rng = random.Random(seed)
    return [rng.choices((1, 2, 3, 4), weights=(40, 40, 15, 5))[0] for _ in range(count)]


@dataclass
class Molecule:
    """A fragment tree: fragment kinds, and bonds (parent, child, parent stem, child stem)."""

    kinds: list[int] = field(default_factory=list)
    bonds: list[list[int]] = field(default_factory=list)
    done: bool = False

    def used(self, node: int) -> set[int]:
        stems = set()
        for a, b, sa, sb in self.bonds:
            if a == node and sa >= 0:
                stems.add(sa)
            if b == node and sb >= 0:
                stems.add(sb)
        return stems

    def degree(self, node: int) -> int:
        return sum(node in (a, b) for a, b, _, _ in self.bonds)

    def backward_count(self) -> int:
        """Actions that undo into this state: remove a leaf with unset bond, or unset a bond."""
        if len(self.kinds) <= 1:
            return 1
        leaves = sum(
            1
            for a, b, sa, sb in self.bonds
            if sa < 0 and sb < 0 and (self.degree(b) == 1 or self.degree(a) == 1)
        )
        return max(1, leaves + sum(sa >= 0 for _, _, sa, _ in self.bonds))


class FragmentEnv:
    """Masks, tensors and transitions of the fragment-building environment."""

    def __init__(self, stems: list[int], max_frags: int) -> None:
        self.stems = stems
        self.kinds = len(stems)
        self.max_frags = max_frags

    def graph(self, mol: Molecule) -> Data:
        """The state as a graph; the empty molecule is one placeholder node (kind = kinds)."""
        kinds = mol.kinds or [self.kinds]
        edges, attrs, pair_masks = [], [], []
        for a, b, sa, sb in mol.bonds:
            edges += [[a, b], [b, a]]
            attr = [0.0] * (2 * (MAX_STEMS + 1))
            attr[sa + 1] = 1.0
            attr[MAX_STEMS + 1 + sb + 1] = 1.0
            attrs += [attr, attr]
            mask = torch.zeros(MAX_STEMS, MAX_STEMS, dtype=torch.bool)
            if sa < 0:
                free_a = [s for s in range(self.stems[mol.kinds[a]]) if s not in mol.used(a)]
                free_b = [s for s in range(self.stems[mol.kinds[b]]) if s not in mol.used(b)]
                for s in free_a:
                    mask[s, free_b] = True
            pair_masks.append(mask.flatten())
        room = len(mol.kinds) < self.max_frags
        add_mask = torch.zeros(len(kinds), self.kinds, dtype=torch.bool)
        for node in range(len(kinds)):
            free = (
                not mol.kinds
                or len(mol.used(node)) + self._pending(mol, node) < self.stems[mol.kinds[node]]
            )
            add_mask[node] = room and free
        return Data(
            x=torch.tensor(kinds),
            edge_index=torch.tensor(edges, dtype=torch.long).T.reshape(2, -1),
            edge_attr=torch.tensor(attrs).reshape(-1, 2 * (MAX_STEMS + 1)),
            add_mask=add_mask,
            edge_mask=torch.stack(pair_masks)
            if pair_masks
            else torch.zeros(0, MAX_STEMS**2, dtype=torch.bool),
            stop_mask=torch.tensor([bool(mol.kinds) and all(sa >= 0 for _, _, sa, _ in mol.bonds)]),
        )

    @staticmethod
    def _pending(mol: Molecule, node: int) -> int:
        """Bonds of ``node`` whose attachment point is not chosen yet (they will take one)."""
        return sum((a == node and sa < 0) or (b == node and sb < 0) for a, b, sa, sb in mol.bonds)

    def step(self, mol: Molecule, action: tuple[str, int, int]) -> None:
        kind, where, what = action
        if kind == "stop":
            mol.done = True
        elif kind == "add":
            mol.kinds.append(what)
            if len(mol.kinds) > 1:
                mol.bonds.append([where, len(mol.kinds) - 1, -1, -1])
        else:
            mol.bonds[where][2], mol.bonds[where][3] = divmod(what, MAX_STEMS)


# --- the model ------------------------------------------------------------------------------


class GraphTransformerGFN(nn.Module):
    """gflownet's GraphTransformer: GENConv + TransformerConv layers over the molecule and a
    virtual node carrying the conditioning, with stop / add-node / set-edge / log Z heads."""

    def __init__(self, kinds: int, cond: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.node_embed = nn.Embedding(kinds + 1, width)
        self.edge_embed = nn.Linear(2 * (MAX_STEMS + 1), width)
        self.cond_embed = nn.Linear(cond, width)
        self.virtual_edge = nn.Parameter(torch.zeros(width))
        self.gen = nn.ModuleList(
            GENConv(width, width, num_layers=1, aggr="add", norm=None) for _ in range(layers)
        )
        self.attn = nn.ModuleList(
            TransformerConv(2 * width, width, heads=heads, edge_dim=width) for _ in range(layers)
        )
        self.mix = nn.ModuleList(nn.Linear(heads * width, width) for _ in range(layers))
        self.ff = nn.ModuleList(
            nn.Sequential(nn.Linear(width, 4 * width), nn.LeakyReLU(), nn.Linear(4 * width, width))
            for _ in range(layers)
        )
        self.norm1 = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))
        self.norm2 = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))

        def head(inputs: int, outputs: int) -> nn.Module:
            return nn.Sequential(
                nn.Linear(inputs, width), nn.LeakyReLU(), nn.Linear(width, outputs)
            )

        self.stop = head(3 * width, 1)
        self.add = head(2 * width, kinds)
        self.edge = head(3 * width, MAX_STEMS**2)
        self.log_z = head(cond, 1)

    def forward(self, batch: Batch, cond: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n, graphs = batch.num_nodes, batch.num_graphs
        x = self.node_embed(batch.x)
        e = self.edge_embed(batch.edge_attr)
        c = self.cond_embed(cond)
        # the virtual node of graph g is node n + g, bonded both ways to each of g's nodes
        nodes = torch.arange(n, device=x.device)
        virtual = n + batch.batch
        edge_index = torch.cat(
            [batch.edge_index, torch.stack([nodes, virtual]), torch.stack([virtual, nodes])], 1
        )
        edge_attr = torch.cat([e, self.virtual_edge.expand(2 * n, -1)], 0)
        h = torch.cat([x, c], 0)
        for gen, attn, mix, ff, norm1, norm2 in zip(
            self.gen, self.attn, self.mix, self.ff, self.norm1, self.norm2, strict=True
        ):
            aggregated = gen(h, edge_index, edge_attr)
            h = norm1(h + mix(attn(torch.cat([h, aggregated], 1), edge_index, edge_attr)))
            h = norm2(h + ff(h))
        node_h, graph_c = h[:n], h[n:]
        pooled = global_mean_pool(node_h, batch.batch, size=graphs)
        graph_h = torch.cat([pooled, graph_c], 1)
        stop = self.stop(torch.cat([graph_h, c], 1)).squeeze(-1)
        add = self.add(torch.cat([node_h, graph_c[batch.batch]], 1))
        src, dst = batch.edge_index[:, ::2]  # one direction per bond
        edge = self.edge(torch.cat([node_h[src], node_h[dst], graph_c[batch.batch[src]]], 1))
        return stop, add, edge, self.log_z(cond).squeeze(-1)


def action_logprobs(
    batch: Batch, stop: torch.Tensor, add: torch.Tensor, edge: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-softmax per state over its valid actions (stop, every node x kind, every bond x pair)."""
    big = torch.finfo(stop.dtype).min
    stop = stop.masked_fill(~batch.stop_mask, big)
    add = add.masked_fill(~batch.add_mask, big)
    edge = edge.masked_fill(~batch.edge_mask, big)
    bond_graph = batch.batch[batch.edge_index[0, ::2]]
    graphs = batch.num_graphs
    most = torch.full((graphs,), big, device=stop.device)
    most = torch.maximum(most, stop)
    most = most.scatter_reduce(0, batch.batch, add.max(1).values, "amax")
    most = most.scatter_reduce(
        0, bond_graph, edge.max(1).values if edge.numel() else edge.new_empty(0), "amax"
    )
    total = (stop - most).exp()
    total = total.index_add(0, batch.batch, (add - most[batch.batch, None]).exp().sum(1))
    if edge.numel():
        total = total.index_add(0, bond_graph, (edge - most[bond_graph, None]).exp().sum(1))
    log_z = most + total.log()
    return stop - log_z, add - log_z[batch.batch, None], edge - log_z[bond_graph, None]


# --- reward, sampling, trajectory balance -------------------------------------------------


class Proxy(nn.Module):
    """Stand-in for the sEH proxy: an MPNN with fixed random weights, reward in (0, 1]."""

    def __init__(self, kinds: int, width: int = 64) -> None:
        super().__init__()
        self.embed = nn.Embedding(kinds + 1, width)
        self.convs = nn.ModuleList(GENConv(width, width, num_layers=1) for _ in range(3))
        self.out = nn.Linear(width, 1)

    @torch.no_grad()
    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.embed(batch.x)
        for conv in self.convs:
            h = F.relu(conv(h, batch.edge_index))
        score = self.out(global_mean_pool(h, batch.batch, size=batch.num_graphs)).squeeze(-1)
        return torch.sigmoid(score).clamp_min(1e-4)


def thermometer(beta: torch.Tensor, bins: int, top: float) -> torch.Tensor:
    """gflownet's thermometer encoding of the reward temperature."""
    edges = torch.linspace(0, top, bins, device=beta.device)
    return (beta[:, None] - edges[None]).clamp(0, top / (bins - 1)) / (top / (bins - 1))


@dataclass
class Trajectory:
    """A sampled trajectory: the states it went through, the actions taken there, the molecule,
    and log P_B of each transition under the uniform backward policy."""

    states: list[Data] = field(default_factory=list)
    actions: list[tuple[str, int, int]] = field(default_factory=list)
    molecule: Molecule = field(default_factory=Molecule)
    log_pb: float = 0.0


def sample(
    env: FragmentEnv, model: nn.Module, cond: torch.Tensor, count: int, device: torch.device
) -> list[Trajectory]:
    """``count`` trajectories from the policy, sampled side by side."""
    runs = [Trajectory() for _ in range(count)]
    mols = [run.molecule for run in runs]
    with torch.no_grad():
        while not all(m.done for m in mols):
            live = [i for i, m in enumerate(mols) if not m.done]
            graphs = [env.graph(mols[i]) for i in live]
            batch = Batch.from_data_list(graphs).to(device)
            stop, add, edge, _ = model(batch, cond[live])
            # choices are made on the host, one trajectory at a time: copy the step's tables once
            stop, add, edge = (t.float().cpu() for t in action_logprobs(batch, stop, add, edge))
            owner = batch.batch.cpu()
            bond_graph = owner[batch.edge_index[0, ::2].cpu()]
            for j, i in enumerate(live):
                choices = [
                    stop[j : j + 1],
                    add[owner == j].flatten(),
                    edge[bond_graph == j].flatten(),
                ]
                flat = torch.cat(choices)
                pick = int(torch.multinomial(flat.exp(), 1))
                if pick == 0:
                    action = ("stop", 0, 0)
                elif pick <= choices[1].numel():
                    action = ("add", *divmod(pick - 1, env.kinds))
                else:
                    action = ("edge", *divmod(pick - 1 - choices[1].numel(), MAX_STEMS**2))
                runs[i].states.append(graphs[j])
                runs[i].actions.append(action)
                env.step(mols[i], action)
                if action[0] != "stop":  # stopping is undone one way only
                    runs[i].log_pb -= math.log(mols[i].backward_count())
    return runs


def taken_logprobs(
    batch: Batch,
    stop: torch.Tensor,
    add: torch.Tensor,
    edge: torch.Tensor,
    actions: list[tuple[str, int, int]],
) -> torch.Tensor:
    """Log P_F of the action taken in each state of ``batch``."""
    node_start = batch.ptr[:-1]
    bonds = batch.edge_index[0, ::2]
    bond_graph = batch.batch[bonds]
    bond_start = torch.searchsorted(bond_graph, torch.arange(batch.num_graphs, device=bonds.device))
    picked = []
    for g, (kind, where, what) in enumerate(actions):
        if kind == "stop":
            picked.append(stop[g])
        elif kind == "add":
            picked.append(add[node_start[g] + where, what])
        else:
            picked.append(edge[bond_start[g] + where, what])
    return torch.stack(picked)


def train(args: argparse.Namespace) -> None:
    device = benchkit.torch_device(args.device)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    env = FragmentEnv(fragment_stems(args.fragments, args.seed), args.max_frags)
    cond_dim = args.temperature_bins
    model = GraphTransformerGFN(env.kinds, cond_dim, args.width, args.layers, args.heads).to(device)
    sampler = copy.deepcopy(model).requires_grad_(False)
    proxy = Proxy(env.kinds).to(device).eval()
    z_params = list(model.log_z.parameters())
    others = [p for n, p in model.named_parameters() if not n.startswith("log_z.")]
    optimizer = torch.optim.Adam(
        [{"params": others, "lr": args.lr}, {"params": z_params, "lr": args.z_lr}],
        betas=(0.9, 0.999),
        weight_decay=1e-8,
        eps=1e-8,
    )
    beta = torch.full((args.batch_size,), args.beta, device=device)
    cond = thermometer(beta, args.temperature_bins, args.beta)

    sizes: list[int] = []
    steps = benchkit.StepLoop(
        range(args.steps),  # restarted until the measurements are taken
        args,
        device=device,
        units="graphs/s",
        optimizer=optimizer,
        precision="fp32",
        clip_grad=args.clip_grad,
        move=False,
        work=lambda _: sizes[-1],  # states trained on, known once the step sampled them
    )
    for _ in steps:
        runs = sample(env, sampler, cond, args.batch_size, device)
        graphs = [g for run in runs for g in run.states]
        taken = [a for run in runs for a in run.actions]
        lengths = torch.tensor([len(run.actions) for run in runs], device=device)
        finals = Batch.from_data_list([env.graph(run.molecule) for run in runs]).to(device)
        log_reward = proxy(finals).log() * beta
        log_pb = torch.tensor([run.log_pb for run in runs], device=device)
        batch = Batch.from_data_list(graphs).to(device)
        owner = torch.repeat_interleave(torch.arange(args.batch_size, device=device), lengths)
        stop, add, edge, log_z = model(batch, cond[owner])
        log_pf = taken_logprobs(batch, *action_logprobs(batch, stop, add, edge), taken)
        traj_pf = torch.zeros(args.batch_size, device=device).index_add(0, owner, log_pf)
        log_z = log_z[torch.cumsum(lengths, 0) - lengths]
        loss = (log_z + traj_pf - log_reward - log_pb).pow(2).mean()
        steps.step(loss)
        with torch.no_grad():
            for target, source in zip(sampler.parameters(), model.parameters(), strict=True):
                target.lerp_(source, 1 - args.sampling_tau)
        sizes.append(batch.num_graphs)


def parser() -> argparse.ArgumentParser:
    p = benchkit.arg_parser(
        "recursiongfn", __doc__.splitlines()[0], batch_size=128, warmup=3, measures=30, every=1
    )
    p.add_argument("--steps", type=int, default=100, help="training steps (Milabench's num_steps)")
    p.add_argument("--width", type=int, default=128, help="layer width (num_emb)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--fragments", type=int, default=72, help="fragment kinds")
    p.add_argument("--max-frags", type=int, default=9, help="fragments a molecule may have")
    p.add_argument("--beta", type=float, default=64.0, help="reward temperature (exponent)")
    p.add_argument("--temperature-bins", type=int, default=32, help="thermometer encoding size")
    p.add_argument("--sampling-tau", type=float, default=0.9, help="EMA of the sampling model")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--z-lr", type=float, default=1e-3, help="learning rate of log Z")
    p.add_argument("--clip-grad", type=float, default=10.0)
    return p


if __name__ == "__main__":
    benchkit.main(train, parser())
