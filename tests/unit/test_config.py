"""Suite loading: merging, overrides, selection, and one error listing every problem with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import config
from orchestrator.errors import ConfigError
from orchestrator.plan import PlanKind


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = """
name: demo
description: two benches
defaults:
  max_duration: 60
  env: {A: "1"}
  argv: {--warmup: 2}
benchmarks:
  base:
    definition: matmul
    argv: {--dtype: fp32, --size: 64}
    tags: [flops]
    unit: TFLOPS
  child:
    inherits: base
    argv: {--dtype: fp16}
    plan: {njobs: 2}
    weight: 2
  multi:
    definition: convnet
    plan: {nodes: 2}
    argv: [--epochs, "1"]
    enabled: false
"""


def test_defaults_inherits_and_argv(tmp_path: Path) -> None:
    suite = config.load_suite(write(tmp_path, GOOD))
    assert suite.name == "demo"
    base, child, multi = suite.benchmarks
    assert base.max_duration == 60 and base.env == {"A": "1"}
    assert base.command_args() == ("--warmup", "2", "--dtype", "fp32", "--size", "64")
    # mappings merge: the child keeps --size from its parent and changes --dtype
    assert child.command_args() == ("--warmup", "2", "--dtype", "fp16", "--size", "64")
    assert child.definition == "matmul" and child.tags == ("flops",) and child.weight == 2
    assert child.plan.kind is PlanKind.NJOBS and child.plan.n == 2
    assert multi.command_args() == ("--epochs", "1") and not multi.enabled
    assert str(multi.plan) == "nodes: 2" and str(base.plan) == "per_gpu"


def test_bool_and_list_argv() -> None:
    bench = config.Benchmark(
        name="b", definition="b", argv={"amp": True, "no-x": False, "sizes": [1, 2], "lr": 0.1}
    )
    assert bench.command_args() == ("--amp", "--sizes", "1", "2", "--lr", "0.1")


def test_all_problems_reported_with_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """name: bad
benchmarks:
  a:
    definition: matmul
    weight: heavy
    colour: red
  b:
    plan: {gpus: 2}
    max_duration: -1
""",
    )
    with pytest.raises(ConfigError) as info:
        config.load_suite(path)
    text = str(info.value)
    assert "4 problems" in text
    assert f"{path}:5: benchmarks.a.weight:" in text
    assert f"{path}:6: benchmarks.a.colour: unknown key" in text
    assert f"{path}:8: benchmarks.b.plan:" in text
    assert f"{path}:9: benchmarks.b.max_duration:" in text
    assert info.value.exit_code == 2


def test_problem_from_defaults_points_at_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "defaults:\n  max_duration: soon\nbenchmarks:\n  a: {}\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: benchmarks.a.max_duration"):
        config.load_suite(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("benchmarks: [1, 2\n", r":2: invalid YAML: expected .,. or .\]"),
        ("benchmarks:\n  a: {}\n  a: {}\n", r":3: invalid YAML: duplicate key 'a'"),
        ("- just\n- a list\n", r"a suite file must be a mapping"),
        ("nmae: x\nbenchmarks: {a: {}}\n", r":1: nmae: unknown key"),
        ("benchmarks:\n  a: {inherits: ghost}\n", r"no benchmark 'ghost' to inherit from"),
        ("benchmarks:\n  a: {inherits: b}\n  b: {inherits: a}\n", r"inheritance cycle"),
        ("include: [missing.yaml]\nbenchmarks: {a: {}}\n", r"include.0: no such file"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        config.load_suite(write(tmp_path, text))


def test_missing_file_and_unknown_suite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        config.load_suite(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="no suite named 'nope'"):
        config.suite_path("nope")


def test_include_and_refine(tmp_path: Path) -> None:
    write(
        tmp_path,
        "defaults: {unit: TFLOPS}\nbenchmarks:\n  fp32: {definition: matmul, weight: 0}\n",
        "lib.yaml",
    )
    path = write(
        tmp_path,
        "name: top\ninclude: [lib.yaml]\nbenchmarks:\n  fp32: {weight: 3}\n  extra: {definition: convnet}\n",
    )
    suite = config.load_suite(path)
    fp32 = suite.get("fp32")
    assert (fp32.weight, fp32.unit, fp32.definition) == (3, "TFLOPS", "matmul")
    assert suite.names() == ["fp32", "extra"]


def test_include_cycle(tmp_path: Path) -> None:
    write(tmp_path, "include: [b.yaml]\nbenchmarks: {x: {}}\n", "a.yaml")
    write(tmp_path, "include: [a.yaml]\nbenchmarks: {y: {}}\n", "b.yaml")
    with pytest.raises(ConfigError, match="include cycle"):
        config.load_suite(tmp_path / "a.yaml")


def test_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    suite = config.load_suite(
        path, overrides=["base.argv.--size=128", "*.max_duration=30", "child.plan=per_gpu"]
    )
    assert suite.get("base").command_args()[-1] == "128"
    assert all(b.max_duration == 30 for b in suite.benchmarks)
    assert suite.get("child").plan.kind is PlanKind.PER_GPU
    with pytest.raises(ConfigError, match="no benchmark 'ghost'"):
        config.load_suite(path, overrides=["ghost.weight=1"])
    with pytest.raises(ConfigError, match=r"expected BENCH\.KEY"):
        config.load_suite(path, overrides=["weight"])
    with pytest.raises(ConfigError, match=r"--set.base.weight"):
        config.load_suite(path, overrides=["base.weight=heavy"])


def test_select_and_exclude(tmp_path: Path) -> None:
    suite = config.load_suite(write(tmp_path, GOOD))
    assert config.select_benchmarks(suite, select=["flops"]).names() == ["base", "child"]
    assert config.select_benchmarks(suite, select=["base,multi"]).names() == ["base", "multi"]
    assert config.select_benchmarks(suite, exclude=["child"]).names() == ["base", "multi"]
    with pytest.raises(ConfigError, match="--select 'ghost': no such benchmark or tag"):
        config.select_benchmarks(suite, select=["ghost"])


def test_config_hash_is_stable(tmp_path: Path) -> None:
    a = config.load_suite(write(tmp_path, GOOD))
    b = config.load_suite(write(tmp_path, GOOD, "copy.yaml"))
    assert a.config_hash() == b.config_hash()
    c = config.load_suite(write(tmp_path, GOOD), overrides=["base.weight=5"])
    assert c.config_hash() != a.config_hash()


def test_shipped_suites_load() -> None:
    suites = sorted((config.benchmarks_root() / "suites").glob("*.yaml"))
    assert suites, "no suite shipped"
    for path in suites:
        suite = config.load_suite(path)
        for bench in suite.benchmarks:
            assert (config.benchmarks_root() / bench.definition).is_dir(), f"{path}: {bench.name}"


PROFILED = """
defaults:
  profiles:
    tiny: {max_duration: 30}
benchmarks:
  bert:
    definition: bert
    argv: {--batch-size: 32, --seq-len: 512}
    profiles:
      tiny: {argv: {--batch-size: 2, --model: tiny}}
      full: {argv: {--batch-size: 64}}
  plain: {definition: matmul}
"""


def test_profiles_change_sizes_only(tmp_path: Path) -> None:
    path = write(tmp_path, PROFILED)
    tiny = config.load_suite(path, profile="tiny")
    assert tiny.profile == "tiny"
    assert tiny.get("bert").command_args() == (
        "--batch-size",
        "2",
        "--seq-len",
        "512",
        "--model",
        "tiny",
    )
    assert tiny.get("bert").max_duration == 30 and tiny.get("plain").max_duration == 30
    full = config.load_suite(path, profile="full")
    assert full.get("bert").command_args() == ("--batch-size", "64", "--seq-len", "512")
    assert full.get("plain").max_duration == 600
    base = config.load_suite(path)
    assert base.get("bert").command_args() == ("--batch-size", "32", "--seq-len", "512")
    assert len({tiny.config_hash(), full.config_hash(), base.config_hash()}) == 3
    # overrides apply on top of the profile
    assert (
        config.load_suite(path, profile="tiny", overrides=["bert.argv.--batch-size=4"])
        .get("bert")
        .command_args()[1]
        == "4"
    )


def test_profile_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--profile 'huge': no benchmark of the suite defines it"):
        config.load_suite(write(tmp_path, PROFILED), profile="huge")
    bad = write(tmp_path, "benchmarks:\n  a:\n    profiles:\n      tiny: {weight: 0}\n", "bad.yaml")
    with pytest.raises(
        ConfigError,
        match=r"bad.yaml:4: benchmarks.a.profiles.tiny.weight: a profile may only change sizes",
    ):
        config.load_suite(bad, profile="tiny")
