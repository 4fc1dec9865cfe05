"""Suite configuration: pydantic models, the YAML loader (defaults, inherits, include), overrides."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrator import limits, safeyaml
from orchestrator.errors import ConfigError
from orchestrator.plan import PlanKind
from orchestrator.resources import Resources
from orchestrator.vendors import Vendor

Scalar = str | int | float | bool | None
ArgValue = Scalar | list[str | int | float]

BENCH_KEYS_NOT_INHERITED = frozenset({"inherits"})
#: A definition is a relative folder under the benchmarks root: no absolute path, no ``..``.
DEFINITION_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$"
#: What a process environment accepts as a variable name.
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: Keys a profile may not change: they decide identity and scoring, not size.
PROFILE_FORBIDDEN = frozenset(
    {"name", "definition", "weight", "enabled", "status", "inherits", "profiles"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PlanSpec(_Model):
    """How a benchmark maps onto devices: ``per_gpu``, ``{njobs: N}`` or ``{nodes: N}``."""

    kind: PlanKind
    n: Annotated[int, Field(gt=0, le=limits.MAX_JOBS)] = 1

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value in (PlanKind.NJOBS, PlanKind.NODES):
                return {"kind": value, "n": 1}
            return {"kind": value}
        if isinstance(value, Mapping) and "kind" not in value:
            if len(value) != 1:
                raise ValueError("plan must be 'per_gpu', {njobs: N} or {nodes: N}")
            ((kind, n),) = value.items()
            return {"kind": kind, "n": n}
        return value

    def __str__(self) -> str:
        return self.kind.value if self.kind is PlanKind.PER_GPU else f"{self.kind.value}: {self.n}"


class Requires(_Model):
    """What a benchmark needs from the machine; a job that cannot get it is skipped with a reason."""

    gpus: PositiveInt | None = Field(default=None, description="minimum number of devices")
    gpu_memory_gb: PositiveFloat | None = Field(
        default=None, description="minimum memory per device"
    )


class Benchmark(_Model):
    """One benchmark of a suite, after defaults and inheritance were merged in."""

    name: str
    definition: str = Field(
        description="folder under benchmarks/",
        pattern=DEFINITION_PATTERN,
    )
    description: str = ""
    argv: dict[str, ArgValue] | list[str] = Field(default_factory=dict)
    weight: NonNegativeFloat = 1.0
    tags: tuple[str, ...] = ()
    unit: str = "items/s"
    plan: PlanSpec = PlanSpec(kind=PlanKind.PER_GPU)
    max_duration: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 600.0
    env: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], str] = Field(default_factory=dict)
    vendors: tuple[Vendor, ...] | None = Field(default=None, description="None: every vendor")
    requires: Requires = Requires()
    enabled: bool = True
    status: Literal["ready", "planned"] = Field(
        default="ready",
        description="planned: not built yet; planned as skipped and scored 0, never dropped",
    )
    resources: Resources | None = Field(
        default=None, description="memory, pids and CPU limits of each job's container or pod"
    )

    @field_validator("env", mode="before")
    @classmethod
    def _env_as_strings(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
        return value

    def command_args(self) -> tuple[str, ...]:
        """The argv as command-line words: mapping keys become flags, ``true`` a bare flag."""
        if isinstance(self.argv, list):
            return tuple(self.argv)
        words: list[str] = []
        for key, value in self.argv.items():
            flag = key if key.startswith("-") else f"--{key}"
            if value is None or value is False:
                continue
            if value is True:
                words.append(flag)
            elif isinstance(value, list):
                words += [flag, *(str(v) for v in value)]
            else:
                words += [flag, str(value)]
        return tuple(words)


class Suite(_Model):
    """A named list of benchmarks with their weights: what ``mbctl run --suite`` executes."""

    name: str
    description: str = ""
    source: str | None = Field(default=None, description="file the suite was loaded from")
    profile: str | None = Field(default=None, description="size profile applied (tiny, full, ...)")
    min_measures: PositiveInt | None = Field(
        default=None,
        description="training rates every job of a submission must report (mbctl verify)",
    )
    benchmarks: tuple[Benchmark, ...]

    def get(self, name: str) -> Benchmark:
        for bench in self.benchmarks:
            if bench.name == name:
                return bench
        raise KeyError(name)

    def names(self) -> list[str]:
        return [b.name for b in self.benchmarks]

    def config_hash(self) -> str:
        """Stable hash of the resolved suite: two runs with the same hash ran the same settings."""
        data = self.model_dump(mode="json", exclude={"source"})
        for bench in data["benchmarks"]:
            # hashes recorded before resources existed stay valid for suites that set none
            if bench.get("resources") is None:
                bench.pop("resources", None)
        canon = json.dumps(data, sort_keys=True)
        return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()

    def scoring_table(self) -> list[dict[str, Any]]:
        """Name, weight and enabled flag of every benchmark: what the score counts (meta.json)."""
        return [{"name": b.name, "weight": b.weight, "enabled": b.enabled} for b in self.benchmarks]


# --- loading ------------------------------------------------------------------------------


@dataclass
class _Source:
    """Where each key of one YAML file stands (line numbers), for error messages."""

    path: Path
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)

    def line_of(self, key_path: Sequence[str]) -> int | None:
        key = tuple(key_path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


@dataclass
class _RawBench:
    """A benchmark's raw mapping plus the sources its keys came from (defaults, parent, itself)."""

    name: str
    data: dict[str, Any]
    origin: dict[str, tuple[_Source, tuple[str, ...]]]


def _index_lines(node: yaml.Node, prefix: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = str(key_node.value)
            out[(*prefix, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*prefix, key), out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*prefix, str(i)), out)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML silently keeps the last one otherwise)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark,
            )
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _read_yaml(path: Path) -> tuple[Any, _Source]:
    text = safeyaml.read_text(path)
    source = _Source(path)
    try:
        safeyaml.check(text, path)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if node is not None:
        _index_lines(node, (), source.lines)
    return data, source


def _deep_merge(base: Any, over: Any) -> Any:
    """Mappings merge key by key (recursively); anything else in ``over`` replaces ``base``."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _deep_merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(over)


_SUITE_KEYS = {"name", "description", "include", "defaults", "benchmarks", "min_measures"}


class _Problems:
    """Collects every problem of a load so the user sees them all at once."""

    def __init__(self, what: str = "suite") -> None:
        self.what = what
        self.items: list[str] = []

    def add(self, source: _Source | None, key_path: Sequence[str], message: str) -> None:
        dotted = ".".join(key_path)
        if source is None:
            self.items.append(f"{dotted}: {message}" if dotted else message)
            return
        line = source.line_of(key_path)
        where = f"{source.path}:{line}" if line else str(source.path)
        self.items.append(f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}")

    def raise_if_any(self, hint: str | None = None) -> None:
        if self.items:
            count = len(self.items)
            head = "1 problem" if count == 1 else f"{count} problems"
            raise ConfigError(
                f"invalid {self.what} ({head}):\n  " + "\n  ".join(self.items), hint=hint
            )


def _collect(
    path: Path, problems: _Problems, stack: tuple[Path, ...]
) -> tuple[dict[str, Any], _Source, dict[str, _RawBench]]:
    """Read one suite file and its includes; return its top level and its raw benchmarks."""
    data, source = _read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.add(source, (), "a suite file must be a mapping with a 'benchmarks' key")
        return {}, source, {}
    for key in data:
        if key not in _SUITE_KEYS:
            problems.add(
                source, (str(key),), f"unknown key (expected one of {sorted(_SUITE_KEYS)})"
            )

    benches: dict[str, _RawBench] = {}
    includes = data.get("include") or []
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list):
        problems.add(source, ("include",), "must be a list of file paths")
        includes = []
    for i, inc in enumerate(includes):
        inc_path = (path.parent / str(inc)).resolve()
        # a suite (and a bundle's) may include its neighbours, never files elsewhere
        if not inc_path.is_relative_to(stack[0].parent):
            problems.add(
                source,
                ("include", str(i)),
                f"{inc} lies outside {stack[0].parent}: includes stay beside the suite file",
            )
            continue
        if inc_path in stack:
            problems.add(source, ("include", str(i)), f"include cycle through {inc_path}")
            continue
        if not inc_path.is_file():
            problems.add(source, ("include", str(i)), f"no such file: {inc_path}")
            continue
        _, _, inc_benches = _collect(inc_path, problems, (*stack, inc_path))
        benches.update(inc_benches)

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.add(source, ("defaults",), "must be a mapping of benchmark settings")
        defaults = {}
    raw_benches = data.get("benchmarks")
    if raw_benches is None and not includes:
        problems.add(source, ("benchmarks",), "missing: a suite needs at least one benchmark")
        raw_benches = {}
    raw_benches = raw_benches or {}
    if not isinstance(raw_benches, dict):
        problems.add(source, ("benchmarks",), "must be a mapping of benchmark name → settings")
        raw_benches = {}

    own: dict[str, dict[str, Any]] = {}
    for name, body in raw_benches.items():
        if body is None:
            body = {}
        if not isinstance(body, dict):
            problems.add(source, ("benchmarks", str(name)), "must be a mapping of settings")
            continue
        own[str(name)] = body

    def resolve(name: str, seen: tuple[str, ...]) -> _RawBench | None:
        body = own[name]
        parent_name = body.get("inherits")
        if parent_name is not None and not isinstance(parent_name, str):
            problems.add(
                source, ("benchmarks", name, "inherits"), "must be the name of one benchmark"
            )
            return None
        base_data: dict[str, Any] = copy.deepcopy(defaults)
        origin: dict[str, tuple[_Source, tuple[str, ...]]] = {
            k: (source, ("defaults", k)) for k in defaults
        }
        if parent_name is not None:
            parent: _RawBench | None
            if parent_name in seen:
                problems.add(
                    source,
                    ("benchmarks", name, "inherits"),
                    f"inheritance cycle: {' → '.join((*seen, parent_name))}",
                )
                return None
            if parent_name in own:
                parent = resolve(str(parent_name), (*seen, str(parent_name)))
            elif parent_name in benches:
                parent = benches[str(parent_name)]
            else:
                problems.add(
                    source,
                    ("benchmarks", name, "inherits"),
                    f"no benchmark {parent_name!r} to inherit from",
                )
                return None
            if parent is None:
                return None
            base_data = _deep_merge(
                base_data, {k: v for k, v in parent.data.items() if k != "name"}
            )
            origin.update(parent.origin)
        elif name in benches:  # redefining an included benchmark refines it
            base_data = _deep_merge(base_data, benches[name].data)
            origin.update(benches[name].origin)
        body = {k: v for k, v in body.items() if k not in BENCH_KEYS_NOT_INHERITED}
        merged = _deep_merge(base_data, body)
        origin.update({k: (source, ("benchmarks", name, k)) for k in body})
        merged["name"] = name
        origin["name"] = (source, ("benchmarks", name))
        merged.setdefault("definition", name)
        return _RawBench(name, merged, origin)

    if len(own) + len(benches) > limits.MAX_BENCHMARKS:
        problems.add(
            source,
            ("benchmarks",),
            f"more than {limits.MAX_BENCHMARKS} benchmarks (limits.MAX_BENCHMARKS)",
        )
        return data, source, {}
    for name in own:
        resolved = resolve(name, (name,))
        if resolved is not None:
            benches[name] = resolved
    return data, source, benches


def apply_overrides(benches: dict[str, _RawBench], overrides: Iterable[str]) -> None:
    """Apply ``--set bench.key.sub=value`` (``*`` for every benchmark); values are YAML scalars."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"--set {item!r}: expected BENCH.KEY[.SUBKEY]=VALUE, e.g. resnet50.argv.batch_size=64"
            )
        try:
            safeyaml.check(text, f"--set {key.strip()}")
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = text
        targets = list(benches) if parts[0] == "*" else [parts[0]]
        for target in targets:
            if target not in benches:
                raise ConfigError(
                    f"--set {item!r}: no benchmark {target!r} in the suite",
                    hint="choose from " + ", ".join(sorted(benches)),
                )
            node: dict[str, Any] = benches[target].data
            for part in parts[1:-1]:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
            node[parts[-1]] = value
            benches[target].origin[parts[1]] = (_Source(Path("--set")), ())


def _loc_to_path(loc: tuple[int | str, ...]) -> tuple[str, ...]:
    return tuple(str(p) for p in loc)


def apply_profile(benches: dict[str, _RawBench], profile: str | None, problems: _Problems) -> None:
    """Merge each benchmark's ``profiles.<profile>`` over its settings and drop ``profiles``.

    Profiles only change sizes (argv, env, max_duration, plan, requires): the same code path
    runs in ``tiny`` on a CPU and in ``full`` on a GPU node.
    """
    known: set[str] = set()
    for rb in benches.values():
        profiles = rb.data.pop("profiles", None) or {}
        src, base = rb.origin.get("profiles", (None, ()))
        if not isinstance(profiles, dict):
            problems.add(src, (*base,), "must be a mapping of profile name → settings")
            continue
        known.update(profiles)
        chosen = profiles.get(profile) if profile else None
        if chosen is None:
            continue
        if not isinstance(chosen, dict):
            problems.add(src, (*base, str(profile)), "must be a mapping of settings")
            continue
        for key in sorted(PROFILE_FORBIDDEN & set(chosen)):
            problems.add(
                src, (*base, str(profile), key), "a profile may only change sizes, not this key"
            )
        rb.data = _deep_merge(
            rb.data, {k: v for k, v in chosen.items() if k not in PROFILE_FORBIDDEN}
        )
        for key in chosen:
            if src is not None:
                rb.origin[key] = (src, (*base, str(profile), key))
    if profile and profile not in known:
        raise ConfigError(
            f"--profile {profile!r}: no benchmark of the suite defines it",
            hint="profiles defined: " + (", ".join(sorted(known)) or "none"),
        )


def load_suite(path: Path, *, overrides: Iterable[str] = (), profile: str | None = None) -> Suite:
    """Load, merge and validate a suite file; every problem is reported in one ConfigError."""
    path = Path(path)
    problems = _Problems()
    top, source, raw = _collect(path.resolve(), problems, (path.resolve(),))
    problems.raise_if_any()
    apply_profile(raw, profile, problems)
    problems.raise_if_any()
    apply_overrides(raw, overrides)

    benchmarks: list[Benchmark] = []
    for name, rb in raw.items():
        try:
            benchmarks.append(Benchmark.model_validate(rb.data))
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = _loc_to_path(err["loc"])
                if loc[:2] == ("plan", "kind"):
                    loc = ("plan",)
                key = loc[0] if loc else ""
                src, base = rb.origin.get(key, (source, ("benchmarks", name)))
                if src.path == Path("--set"):
                    problems.add(None, ("--set", name, *loc), err["msg"])
                    continue
                tail = loc[1:] if key and base and base[-1] == key else loc
                where = (*base, *tail)
                shown = ("benchmarks", name, *loc)
                line = src.line_of(where)
                prefix = f"{src.path}:{line}" if line else str(src.path)
                problems.items.append(f"{prefix}: {'.'.join(shown)}: {_message(err)}")
    if not isinstance(top.get("name", path.stem), str):
        problems.add(source, ("name",), "must be a string")
    min_measures = top.get("min_measures")
    if min_measures is not None and (
        not isinstance(min_measures, int) or isinstance(min_measures, bool) or min_measures < 1
    ):
        problems.add(source, ("min_measures",), "must be a positive integer")
    problems.raise_if_any()
    return Suite(
        name=str(top.get("name") or path.stem),
        description=str(top.get("description") or ""),
        source=str(path),
        profile=profile,
        min_measures=min_measures,
        benchmarks=tuple(benchmarks),
    )


_PATTERN_MESSAGES = {
    DEFINITION_PATTERN: "must be a relative folder under benchmarks/ (no absolute path, no '..')",
    ENV_NAME_PATTERN: "an environment variable name is letters, digits and _",
}


def _message(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "missing required key"
    pattern = (err.get("ctx") or {}).get("pattern")
    if pattern in _PATTERN_MESSAGES:
        return f"{_PATTERN_MESSAGES[pattern]}, not {err.get('input')!r}"
    if err["type"] == "less_than_equal" and err["loc"][:2] == ("plan", "n"):
        return f"at most {limits.MAX_JOBS} jobs (limits.MAX_JOBS)"
    return str(err["msg"]).removeprefix("Value error, ")


M = TypeVar("M", bound=BaseModel)


def load_model(path: Path, model: type[M], *, what: str, hint: str | None = None) -> M:
    """Read a YAML file (lock, reference, cluster settings...) into a pydantic ``model``.

    Every problem is reported at once in one ConfigError, as ``file:line: key.path: message``,
    the same way suite files are.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no {what} at {path}", hint=hint)
    data, source = _read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a {what} must be a mapping of keys", hint=hint)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = _Problems(what)
        for err in exc.errors(include_url=False):
            problems.add(source, _loc_to_path(err["loc"]), _message(err))
        problems.raise_if_any(hint)
        raise  # pragma: no cover - a ValidationError always has errors


# --- finding suites and benchmarks -------------------------------------------------------


def benchmarks_root() -> Path:
    """The folder holding benchmark definitions: $MBCTL_BENCHMARKS, ./benchmarks, or the source tree's."""
    env = os.environ.get("MBCTL_BENCHMARKS")
    if env:
        return Path(env).resolve()
    here = Path.cwd() / "benchmarks"
    if (here / "suites").is_dir():
        return here.resolve()
    return (Path(__file__).resolve().parent.parent / "benchmarks").resolve()


def definition_folder(root: Path, definition: str) -> Path:
    """The folder of ``definition`` under ``root``; ConfigError if it resolves elsewhere
    (``..``, an absolute path, or a symbolic link leading out): suites are data, and a
    bundle's suite must not name code outside the benchmarks this machine trusts."""
    base = Path(root).resolve()
    folder = (base / definition).resolve()
    if not folder.is_relative_to(base) or folder == base:
        raise ConfigError(
            f"definition {definition!r} resolves to {folder}, outside the benchmarks root {base}",
            hint="a definition names a folder under benchmarks/",
        )
    return folder


def suite_path(name_or_file: str) -> Path:
    """A suite given as a file path, or by name from ``benchmarks/suites/NAME.yaml``."""
    candidate = Path(name_or_file)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.is_file():
            raise ConfigError(f"suite file {candidate} does not exist")
        return candidate
    suites = benchmarks_root() / "suites"
    path = suites / f"{name_or_file}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in suites.glob("*.yaml"))
        raise ConfigError(
            f"no suite named {name_or_file!r}",
            hint=f"known suites: {', '.join(known) or 'none'}; or pass a YAML file",
        )
    return path


def load_selected(
    name_or_file: str,
    *,
    overrides: Iterable[str] = (),
    profile: str | None = None,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Suite:
    """What every command that takes ``--suite/--set/--profile/--select/--exclude`` plans from."""
    suite = load_suite(suite_path(name_or_file), overrides=overrides, profile=profile)
    return select_benchmarks(suite, select=select, exclude=exclude)


def select_benchmarks(
    suite: Suite, *, select: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Suite:
    """Keep the benchmarks matching ``select`` (names or tags) minus ``exclude``; unknown → error."""

    def expand(words: Sequence[str], option: str) -> set[str]:
        names = set(suite.names())
        tags = {t for b in suite.benchmarks for t in b.tags}
        chosen: set[str] = set()
        for raw in words:
            for word in filter(None, (w.strip() for w in raw.split(","))):
                if word in names:
                    chosen.add(word)
                elif word in tags:
                    chosen.update(b.name for b in suite.benchmarks if word in b.tags)
                else:
                    raise ConfigError(
                        f"{option} {word!r}: no such benchmark or tag in suite {suite.name!r}",
                        hint="benchmarks: " + ", ".join(suite.names()),
                    )
        return chosen

    keep = expand(select, "--select") if select else set(suite.names())
    keep -= expand(exclude, "--exclude")
    return suite.model_copy(
        update={"benchmarks": tuple(b for b in suite.benchmarks if b.name in keep)}
    )
