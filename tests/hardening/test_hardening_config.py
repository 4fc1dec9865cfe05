"""Suite files are untrusted data: bounded YAML, caps with one-line errors, definitions confined."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

from orchestrator import config, limits
from orchestrator.errors import ConfigError
from orchestrator.plan import make_plan, parse_devices
from orchestrator.resources import Resources

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
benchmarks: {x: {argv: *i}}
"""


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    text = str(exc.value)
    assert "Traceback" not in text
    return text


def test_alias_bomb_is_refused_at_its_line_without_expanding(tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ConfigError) as exc:
        config.load_suite(write(tmp_path, BOMB))
    assert f"suite.yaml:5: aliases expand to more than {limits.MAX_YAML_ALIAS_NODES}" in one_line(
        exc
    )
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100_000  # 9**9 strings would take gigabytes


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    text = "defaults: &d {max_duration: 5}\nbenchmarks:\n  a: {definition: m, env: &e {A: '1'}}\n  b: {definition: m, env: *e}\n"
    suite = config.load_suite(write(tmp_path, text))
    assert suite.get("b").env == {"A": "1"}


def test_deep_nesting_is_refused_with_its_line(tmp_path: Path) -> None:
    text = "name: deep\nbenchmarks:\n  x:\n    argv: " + "[" * 10_000 + "]" * 10_000 + "\n"
    with pytest.raises(ConfigError) as exc:
        config.load_suite(write(tmp_path, text))
    assert f"suite.yaml:4: nested deeper than {limits.MAX_YAML_DEPTH} levels" in one_line(exc)


def test_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"suite.yaml:1: alias \*a refers to a node"):
        config.load_suite(write(tmp_path, "benchmarks: &a {x: *a}\n"))


def test_oversized_suite_file_names_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "w") as f:
        f.write("benchmarks:\n")
        f.write("  # padding\n" * (limits.MAX_YAML_BYTES // 10))
    with pytest.raises(ConfigError, match=r"larger than \d+ bytes \(limits.MAX_YAML_BYTES\)"):
        config.load_suite(path)


def test_too_many_benchmarks_names_the_limit(tmp_path: Path) -> None:
    body = "".join(f"  b{i}: {{definition: m}}\n" for i in range(limits.MAX_BENCHMARKS + 1))
    with pytest.raises(ConfigError, match=r"limits.MAX_BENCHMARKS"):
        config.load_suite(write(tmp_path, "benchmarks:\n" + body))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "benchmarks:\n  a: {inherits: [x]}\n",
            "suite.yaml:2: benchmarks.a.inherits: must be the name",
        ),
        (
            "benchmarks:\n  ? [a]\n  : {}\n",
            "suite.yaml:2: invalid YAML: a mapping key must be a plain",
        ),
        (
            "benchmarks:\n  a: {env: {'A=B': x}}\n",
            "benchmarks.a.env.A=B.[key]: an environment variable",
        ),
        (
            "benchmarks:\n  a: {max_duration: .inf}\n",
            "benchmarks.a.max_duration: Input should be a finite",
        ),
        (
            "benchmarks:\n  a: {definition: ../../etc}\n",
            "benchmarks.a.definition: must be a relative folder",
        ),
        (
            "benchmarks:\n  a: {definition: /usr/lib}\n",
            "benchmarks.a.definition: must be a relative folder",
        ),
        (
            "benchmarks:\n  a: {definition: x/../../y}\n",
            "benchmarks.a.definition: must be a relative folder",
        ),
        (
            "benchmarks:\n  a: {plan: {njobs: 1000000000}}\n",
            "benchmarks.a.plan.n: at most 10000 jobs (limits.MAX_JOBS)",
        ),
        (
            "include: [../elsewhere.yaml]\nbenchmarks: {a: {}}\n",
            "include.0: ../elsewhere.yaml lies outside",
        ),
        ("benchmarks:\n  a: {resources: {memory: lots}}\n", "benchmarks.a.resources.memory"),
    ],
)
def test_bad_input_is_one_config_error(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.load_suite(write(tmp_path, text))
    assert expected in one_line(exc)


def test_definition_symlink_out_of_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "benchmarks"
    (root / "ok").mkdir(parents=True)
    os.symlink(tmp_path, root / "escape")
    assert config.definition_folder(root, "ok") == (root / "ok").resolve()
    with pytest.raises(ConfigError, match="outside the benchmarks root"):
        config.definition_folder(root, "escape")


def test_devices_and_jobs_are_capped() -> None:
    with pytest.raises(ConfigError, match=r"more than 1024 \(limits.MAX_DEVICES\)"):
        parse_devices("100000000")
    assert len(parse_devices("8")) == 8
    suite = config.Suite(
        name="s",
        benchmarks=tuple(
            config.Benchmark(name=f"b{i}", definition="m", plan={"njobs": 6000})  # type: ignore[arg-type]
            for i in range(2)
        ),
    )
    with pytest.raises(ConfigError, match=r"more than 10000 jobs at b1 \(limits.MAX_JOBS\)"):
        make_plan(suite, vendor="cpu")


def test_resources_merge_from_defaults_and_reach_the_jobs(tmp_path: Path) -> None:
    text = (
        "defaults: {resources: {memory: 16Gi, pids: 4096}}\n"
        "benchmarks:\n  a: {definition: m, resources: {cpus: 2.5}}\n  b: {definition: m}\n"
    )
    suite = config.load_suite(write(tmp_path, text))
    a = suite.get("a").resources
    assert a == Resources(memory="16Gi", pids=4096, cpus=2.5)
    assert a is not None and a.memory_bytes() == 16 * 2**30
    assert Resources(memory="512M").memory_bytes() == 512 * 10**6
    jobs = {j.bench: j for j in make_plan(suite, vendor="cpu").jobs}
    assert jobs["b"].resources == Resources(memory="16Gi", pids=4096)
    assert jobs["a"].describe()["resources"] == {"memory": "16Gi", "pids": 4096, "cpus": 2.5}


def test_suites_without_resources_keep_their_config_hash() -> None:
    plain = config.Suite(name="s", benchmarks=(config.Benchmark(name="a", definition="m"),))
    assert "resources" not in str(plain.config_hash())
    limited = config.Suite(
        name="s",
        benchmarks=(config.Benchmark(name="a", definition="m", resources=Resources(pids=10)),),
    )
    assert plain.config_hash() != limited.config_hash()
    from orchestrator.plan import Job, PlanKind

    job = Job(
        id="a.0",
        bench="a",
        tag="0",
        definition="m",
        vendor="cpu",
        plan=PlanKind.PER_GPU,
        max_duration=1,
    )
    assert "resources" not in job.describe()
