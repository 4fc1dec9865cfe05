"""The full profiles build Milabench's workloads: model sizes, losses, counts and settings, checked
cheaply (models on torch's meta device) with each benchmark's own code and its full-profile argv.

One benchmark-environment subprocess gathers the facts; each test checks one benchmark's.
"""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from orchestrator import config

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

# Runs in the benchmark environment: argv holds each benchmark's full-profile command line.
FACTS = r"""
import importlib.util, json, sys
from pathlib import Path
from types import SimpleNamespace
import torch

argv = json.loads(sys.stdin.read())
root = Path(sys.argv[1])

def module(folder):
    for name in ("main", "data"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(root / folder))
    spec = importlib.util.spec_from_file_location(f"{folder}_main", root / folder / "main.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while it executes
    spec.loader.exec_module(mod)
    sys.path.remove(str(root / folder))
    return mod

def params(model):
    return sum(p.numel() for p in model.parameters())

facts = {}
geo = module("geo_gnn")
args = geo.parser().parse_args(argv["pna"])
pna = geo.make_model(args, [geo.Data(x=torch.zeros(3, 9), edge_index=torch.tensor([[0, 1], [1, 2]]))])
facts["pna"] = {"params": params(pna), "towers": pna.pna.convs[0].towers,
                "out": pna.pna.out_channels, "batch": args.batch_size}
args = geo.parser().parse_args(argv["dimenet"])
dimenet = geo.make_model(args, [])
facts["dimenet"] = {"params": params(dimenet), "blocks": len(dimenet.net.interaction_blocks),
                    "hidden": dimenet.net.emb.emb.embedding_dim, "batch": args.batch_size}

from transformers import BertConfig, ReformerConfig
reformer = module("reformer")
args = reformer.parser().parse_args(argv["reformer"])
cfg = reformer.make_config(args)
default = ReformerConfig(num_buckets=128)
with torch.device("meta"):
    model = reformer.ReformerForMaskedLM(cfg)
facts["reformer"] = {"params": params(model), "class": type(model).__name__,
                     "default_config": cfg.to_dict() == default.to_dict(),
                     "batch": args.batch_size, "lr": args.lr}

bert = module("bert")
args = bert.parser().parse_args(argv["bert-tf32-fp16"])
cfg = bert.make_config(args)
with torch.device("meta"):
    model = bert.BertForMaskedLM(cfg)
facts["bert"] = {"params": params(model), "default_config": cfg.to_dict() == BertConfig().to_dict(),
                 "batch": args.batch_size, "lr": args.lr, "precision": args.precision}
batch = next(iter(bert.benchkit.random_token_batches(vocab=100, seq_len=8, batch_size=2, workers=0,
                                                    seed=0)))
facts["bert"]["labels_everywhere"] = bool((batch["labels"] >= 0).all())

llama = module("llama")
args = llama.parser().parse_args(argv["llama"])
with torch.device("meta"):
    model = llama.LlamaForCausalLM(llama.make_config(args, 32000))
class Tok:
    def __call__(self, text):
        return {"input_ids": text.split()}
facts["llama"] = {"params": params(model), "workload": args.workload, "dtype": args.dtype,
                  "batch": args.batch_size, "max_length": args.max_length,
                  "work": llama.milabench_work(Tok(), "a b c", [{"generated_text": "a b c de"}])}
cfg = model.config
facts["llama"]["config"] = [cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers,
                            cfg.num_attention_heads, cfg.num_key_value_heads, cfg.rms_norm_eps]

llava = module("llava")
args = llava.parser().parse_args(argv["llava-single"])
class LlavaTok:
    def __len__(self):
        return 32002
    def convert_tokens_to_ids(self, token):
        return 32000
with torch.device("meta"):
    model = llava.LlavaForConditionalGeneration(
        llava.make_config(args, SimpleNamespace(tokenizer=LlavaTok())))
facts["llava"] = {"params": params(model), "workload": args.workload, "dtype": args.dtype,
                  "batch": args.batch_size, "lr": args.lr, "clip": args.clip_grad}

brax = module("brax")
args = brax.parser().parse_args(argv["brax"])
kwargs = brax.train_kwargs(args)
facts["brax"] = {k: kwargs[k] for k in ("num_updates_per_batch", "reward_scaling", "num_envs",
                                         "batch_size", "num_minibatches", "episode_length")}
facts["brax"]["epoch_steps"] = kwargs["num_timesteps"] // (kwargs["num_evals"] - 1)

ppo = module("ppo")
args = ppo.parser().parse_args(argv["ppo"])
facts["ppo"] = {"backend": args.backend, "env": args.env, "num_envs": args.num_envs,
                "updates": ppo.updates(args)}
print(json.dumps(facts))
"""

NAMES = ("pna", "dimenet", "reformer", "bert-tf32-fp16", "llama", "llava-single", "brax", "ppo")


@cache
def facts(python: Path) -> dict[str, Any]:
    full = config.load_suite(BENCHMARKS / "suites" / "standard.yaml", profile="full")
    argv = {b.name: list(b.command_args()) for b in full.benchmarks if b.name in NAMES}
    proc = subprocess.run(
        [str(python), "-c", FACTS, str(BENCHMARKS)],
        input=json.dumps(argv),
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(BENCHMARKS / "benchkit")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    found: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return found


pytestmark = pytest.mark.slow


def test_pna_is_milabenchs_4m_model(bench_python: Path) -> None:
    assert facts(bench_python)["pna"] == {"params": 4_096_110, "towers": 1, "out": 1, "batch": 4096}


def test_dimenet_is_6_blocks_of_64_at_batch_16(bench_python: Path) -> None:
    got = facts(bench_python)["dimenet"]
    assert got == {"params": 534_950, "blocks": 6, "hidden": 64, "batch": 16}


def test_reformer_is_the_default_config_as_masked_lm(bench_python: Path) -> None:
    got = facts(bench_python)["reformer"]
    assert got == {
        "params": 5_975_872,
        "class": "ReformerForMaskedLM",
        "default_config": True,
        "batch": 32,
        "lr": 1e-3,
    }


def test_bert_is_bert_base_with_labels_at_every_position(bench_python: Path) -> None:
    got = facts(bench_python)["bert"]
    assert got == {
        "params": 109_514_298,
        "default_config": True,
        "batch": 32,
        "lr": 1e-3,
        "precision": "tf32-fp16",
        "labels_everywhere": True,
    }


def test_llama_is_the_7b_pipeline_counting_tokens_and_characters(bench_python: Path) -> None:
    got = facts(bench_python)["llama"]
    assert got["params"] == 6_738_415_616
    assert got["config"] == [4096, 11008, 32, 32, 32, 1e-6]
    assert (got["workload"], got["dtype"], got["batch"], got["max_length"]) == (
        "pipeline",
        "fp32",
        1,
        400,
    )
    assert got["work"] == 3 + len("a b c de")  # prompt tokens + characters of the full text


def test_llava_single_fine_tunes_the_7b_model(bench_python: Path) -> None:
    got = facts(bench_python)["llava"]
    assert 7_000_000_000 < got["params"] < 7_100_000_000
    assert {k: v for k, v in got.items() if k != "params"} == {
        "workload": "train",
        "dtype": "bf16",
        "batch": 1,
        "lr": 5e-5,
        "clip": 1.0,
    }


def test_brax_runs_brax_defaults_with_milabenchs_epochs(bench_python: Path) -> None:
    assert facts(bench_python)["brax"] == {
        "num_updates_per_batch": 2,
        "reward_scaling": 0.1,
        "num_envs": 8192,
        "batch_size": 1024,
        "num_minibatches": 32,
        "episode_length": 20,
        "epoch_steps": 327_680,
    }


def test_ppo_is_hopper_positional_with_128_envs(bench_python: Path) -> None:
    assert facts(bench_python)["ppo"] == {
        "backend": "positional",
        "env": "hopper",
        "num_envs": 128,
        "updates": 1562,
    }
