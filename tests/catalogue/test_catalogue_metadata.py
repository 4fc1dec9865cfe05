"""The catalogue's metadata agrees with itself, with the suites and with the Milabench report."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from orchestrator import config

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
SUITES = BENCHMARKS / "suites"

# Table 2 of the report (the main suite, 26 benchmarks). llm-full-mp-gpus is missing from the
# table as extracted but has its row in Table 4 (results) and makes the count 26.
REPORT_MAIN = {
    "reformer": 1,
    "bert-tf32-fp16": 1,
    "llm-lora-single": 1,
    "llm-lora-ddp-gpus": 1,
    "llm-lora-ddp-nodes": 1,
    "llm-lora-mp-gpus": 1,
    "llm-full-mp-gpus": 1,
    "llm-full-mp-nodes": 1,
    "llama": 1,
    "vjepa-single": 1,
    "vjepa-gpus": 1,
    "resnet50": 1,
    "lightning-gpus": 1,
    "convnext_large-tf32-fp16": 1,
    "regnet_y_128gf": 1,
    "dinov2-giant-gpus": 1,
    "diffusion-gpus": 1,
    "diffusion-nodes": 1,
    "llava-single": 1,
    "torchatari": 1,
    "ppo": 1,
    "brax": 1,
    "rlhf-single": 1,
    "pna": 2,
    "dimenet": 2,
    "recursiongfn": 2,
}
# Table 3 of the report (optional benchmarks), rows not already in the main suite.
REPORT_OPTIONAL = {
    "bf16": 0,
    "fp16": 0,
    "tf32": 0,
    "fp32": 0,
    "convnext_large-fp16": 0,
    "convnext_large-tf32": 0,
    "convnext_large-fp32": 0,
    "bert-fp16": 0,
    "bert-tf32": 0,
    "bert-fp32": 0,
    "resnet50-noio": 0,
    "lightning": 0,
    "dinov2-giant-single": 0,
    "diffusion-single": 0,
    "rlhf-gpus": 0,
}
REPORT = {**REPORT_MAIN, **REPORT_OPTIONAL}
# Our own weight-0 variants beside a Milabench workload we run under Milabench's name.
OURS = {"llama-generate": 0, "llava-generate": 0}
CATALOGUE_FOLDERS = [
    "matmul",
    "bert",
    "reformer",
    "llama",
    "llm-lora",
    "torchvision",
    "lightning",
    "dinov2",
    "vjepa",
    "diffusion",
    "llava",
    "torchatari",
    "ppo",
    "brax",
    "geo_gnn",
    "rlhf",
    "recursiongfn",
]


def metadata() -> dict[str, dict[str, Any]]:
    return {
        f: yaml.safe_load((BENCHMARKS / f / "bench.yaml").read_text()) for f in CATALOGUE_FOLDERS
    }


def entries() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every benchmark name of the catalogue → (its definition folder, its entry in bench.yaml)."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for folder, meta in metadata().items():
        for name, entry in meta["benchmarks"].items():
            assert name not in found, f"{name} listed by {found[name][0]} and {folder}"
            status = entry.get("status", meta["status"])
            found[name] = (
                folder,
                {**entry, "status": status, "reason": entry.get("reason", meta.get("reason"))},
            )
    return found


def suite(name: str, profile: str | None = None) -> config.Suite:
    return config.load_suite(SUITES / f"{name}.yaml", profile=profile)


def test_every_catalogue_folder_is_complete() -> None:
    for folder, meta in metadata().items():
        keys = {"name", "status", "description", "domain", "framework", "library", "unit"}
        keys |= {"unit_of_work", "benchmarks", "tiny", "full"}
        assert keys <= set(meta), f"{folder}: missing {keys - set(meta)}"
        assert meta["name"] == folder
        path = BENCHMARKS / folder
        if meta["status"] == "ready":
            assert (path / "main.py").is_file() and (path / "requirements.txt").is_file(), folder
        else:
            assert meta["status"] == "planned" and meta["reason"], folder
            assert not (path / "main.py").exists(), f"{folder} is planned but has code"
        for name, entry in meta["benchmarks"].items():
            assert {"model", "weight"} <= set(entry), f"{folder}: {name}"
            if entry.get("status") == "planned":
                assert entry["reason"], f"{name} is planned without a reason"


def test_catalogue_covers_the_report_with_its_weights() -> None:
    catalogue = entries()
    assert set(catalogue) == set(REPORT) | set(OURS)
    for name, (folder, entry) in catalogue.items():
        assert entry["weight"] == {**REPORT, **OURS}[name], f"{folder}/bench.yaml: {name}"


@pytest.mark.parametrize("name", ["standard", "precision"])
def test_suites_match_bench_metadata_and_report(name: str) -> None:
    catalogue = entries()
    for bench in suite(name).benchmarks:
        folder, entry = catalogue[bench.name]
        meta = metadata()[folder]
        assert bench.definition == folder, bench.name
        # A benchmark not built yet stays in the suite as planned (skipped, scored 0).
        assert bench.status == entry["status"], f"{bench.name}: status differs from bench.yaml"
        assert bench.weight == entry["weight"] == {**REPORT, **OURS}[bench.name], bench.name
        assert bench.unit == entry.get("unit", meta["unit"]), bench.name
        assert bench.enabled


def test_standard_is_the_whole_main_suite_plus_optional_variants() -> None:
    loaded = suite("standard")
    names = set(loaded.names())
    assert set(REPORT_MAIN) <= names, "a main benchmark left out would vanish from the score"
    assert names - set(REPORT_MAIN) == {
        "resnet50-noio",
        "lightning",
        "dinov2-giant-single",
        "diffusion-single",
        "rlhf-gpus",
        *OURS,
    }
    ready = {n for n, (_, e) in entries().items() if e["status"] == "ready"}
    assert {b.name for b in loaded.benchmarks if b.status == "ready"} <= ready


def test_precision_is_the_report_precision_table() -> None:
    assert set(suite("precision").names()) == {
        *("fp32", "tf32", "fp16", "bf16"),
        *(f"bert-{p}" for p in ("fp32", "tf32", "fp16", "tf32-fp16")),
        *(f"convnext_large-{p}" for p in ("fp32", "tf32", "fp16", "tf32-fp16")),
    }


@pytest.mark.parametrize("name", ["standard", "precision"])
def test_tiny_profile_is_small_and_full_measures_thirty_times(name: str) -> None:
    for bench in suite(name, "tiny").benchmarks:
        args = dict(zip(bench.command_args()[::2], bench.command_args()[1::2], strict=False))
        assert int(args["--measures"]) >= 5 and int(args["--every"]) <= 2, bench.name
    for bench in suite(name, "full").benchmarks:
        args = dict(zip(bench.command_args()[::2], bench.command_args()[1::2], strict=False))
        assert int(args["--measures"]) >= 30, bench.name


def _module(folder: str, stem: str) -> ModuleType:
    """A benchmark folder's module, imported under a unique name (every folder has a data.py)."""
    unique = f"catalogue_{folder.replace('-', '_')}_{stem}"
    if unique not in sys.modules:
        sys.path.insert(0, str(BENCHMARKS / "benchkit"))
        spec = importlib.util.spec_from_file_location(unique, BENCHMARKS / folder / f"{stem}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        spec.loader.exec_module(module)
    return sys.modules[unique]


@pytest.mark.parametrize("profile", ["tiny", "full"])
def test_benchmarks_sharing_a_definition_share_its_dataset(profile: str) -> None:
    """`mbctl prepare` runs a definition's prepare.py once, with its first benchmark's argv."""
    for name in ("standard", "precision"):
        by_folder: dict[str, set[str]] = {}
        for bench in suite(name, profile).benchmarks:
            # A planned entry never runs: its argv is not prepared (the planner skips it).
            if bench.status != "ready" or not (BENCHMARKS / bench.definition / "data.py").is_file():
                continue
            data = _module(bench.definition, "data")
            parser = argparse.ArgumentParser(add_help=False)
            parser.add_argument("--seed", type=int, default=0)
            data.add_arguments(parser)
            spec = data.params(parser.parse_known_args(list(bench.command_args()))[0])
            by_folder.setdefault(bench.definition, set()).add(repr(sorted(spec.items())))
        shared = {folder: specs for folder, specs in by_folder.items() if len(specs) > 1}
        assert not shared, f"{name}.yaml ({profile}): datasets differ within a definition"


def test_fakeimagenet_generator_is_one_file_in_every_folder() -> None:
    # The cache names FakeImageNet by its parameters: every folder must generate the same bytes.
    files = {
        (BENCHMARKS / f / "data.py").read_bytes() for f in ("torchvision", "lightning", "dinov2")
    }
    assert len(files) == 1


def test_docs_list_every_benchmark_with_its_status() -> None:
    rows: dict[str, list[str]] = {}
    for line in (ROOT / "docs" / "catalogue.md").read_text().splitlines():
        if line.startswith("| `"):
            rows.setdefault(line.split("|")[1].strip().strip("`"), []).append(line)
    for name, (_, entry) in entries().items():
        assert name in rows, f"docs/catalogue.md has no row for {name}"
        assert any(f"| {entry['status']} |" in row for row in rows[name]), name
        if entry["status"] == "planned":
            assert any(entry["reason"] in row for row in rows[name]), f"{name}: reason"
