"""Images without an engine: rendering (golden), content hashes and tags, labels, the lock, fakes of the SDK.

Golden Dockerfiles live in tests/golden/images/. After an intended template change, rewrite them
with MBCTL_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator import images, vendors
from orchestrator.cli.main import app
from orchestrator.errors import BackendUnavailable, ConfigError, ImageError
from orchestrator.vendors import Vendor

GOLDEN = Path(__file__).parent / "golden" / "images"
ROOT = Path(__file__).resolve().parent.parent
DIGEST = "sha256:" + "1" * 64
OTHER = "sha256:" + "2" * 64
IMAGE_ID = "sha256:" + "3" * 64


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MBCTL_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing: run with MBCTL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} changed: review, then run with MBCTL_UPDATE_GOLDEN=1"


# --- rendering -------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", list(Vendor))
def test_base_template_of_each_vendor(vendor: Vendor) -> None:
    base = images.BaseRef(name=vendors.get(vendor).base_image, digest=DIGEST)
    check_golden(
        f"base-{vendor.value}.Dockerfile", images.render_base(vendor, base, ca_bundle=True)
    )


def _shell_problems(command: str) -> list[str]:
    """What is wrong with one RUN command: bash's syntax check, then any unquoted redirect."""
    import shlex
    import subprocess

    done = subprocess.run(
        ["bash", "-n", "-c", command], capture_output=True, text=True, check=False
    )
    problems = [done.stderr.strip()] if done.returncode else []
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    redirects = [token for token in lexer if token.startswith(("<", ">")) or token.endswith(">")]
    # a requirement such as nvidia-ml-py>=12 left unquoted makes the shell write a file named =12
    problems += [f"unquoted redirect {token!r}" for token in redirects]
    return problems


@pytest.mark.parametrize("vendor", list(Vendor))
@pytest.mark.parametrize("wheelhouse", [False, True], ids=["index", "wheelhouse"])
def test_every_run_line_is_one_shell_command_without_redirects(
    vendor: Vendor, wheelhouse: bool
) -> None:
    base = images.BaseRef(name=vendors.get(vendor).base_image, digest=DIGEST)
    texts = [
        images.render_base(vendor, base, ca_bundle=True, wheelhouse=wheelhouse),
        images.render_benchmark("matmul", vendor, "localhost/mbctl/base:x", wheelhouse=wheelhouse),
    ]
    commands = [command for text in texts for command in images.run_lines(text)]
    assert len(commands) >= 3
    assert {c: _shell_problems(c) for c in commands} == {c: [] for c in commands}


def test_the_shell_check_catches_an_unquoted_specifier() -> None:
    text = "RUN python -m pip install \\\n        nvidia-ml-py>=12\n"
    (command,) = images.run_lines(text)
    assert _shell_problems(command) == ["unquoted redirect '>'"]


def test_base_template_air_gapped() -> None:
    base = images.BaseRef(name="mbctl-test/python-base:bookworm", digest=IMAGE_ID, local=True)
    text = images.render_base(Vendor.CPU, base, wheelhouse=True, build_args=["PIP_INDEX_URL"])
    check_golden("base-cpu-wheelhouse.Dockerfile", text)
    assert (
        "FROM mbctl-test/python-base:bookworm AS base" in text
    )  # an image ID is no registry digest
    assert "--no-index --find-links /tmp/mbctl/wheelhouse" in text
    assert "download.pytorch.org" not in text


@pytest.mark.parametrize("wheelhouse", [False, True], ids=["index", "wheelhouse"])
def test_benchmark_template(wheelhouse: bool) -> None:
    text = images.render_benchmark(
        "matmul", Vendor.CPU, "localhost/mbctl/base:cpu-0123456789ab", wheelhouse=wheelhouse
    )
    check_golden(f"benchmark-{'wheelhouse' if wheelhouse else 'index'}.Dockerfile", text)
    assert 'ENTRYPOINT ["python", "main.py"]' in text
    assert 'LABEL mbctl.volumes="/data,/results"' in text


def test_benchmark_without_requirements_skips_pip() -> None:
    text = images.render_benchmark("x", Vendor.CUDA, "b:1", requirements=False)
    assert "requirements" not in text.replace("requirements.txt", "")
    assert "--extra-index-url" not in text  # cuda has no torch index: its torch is the NGC one


def test_vendor_specific_blocks_stay_in_their_templates() -> None:
    rendered = {v: images.render_base(v, images.BaseRef(name="x")) for v in Vendor}
    assert "amd_smi" in rendered[Vendor.ROCM]
    assert all("amd_smi" not in text for v, text in rendered.items() if v is not Vendor.ROCM)
    assert "HABANA_LOGS" in rendered[Vendor.HPU]
    assert "nvidia-ml-py" in rendered[Vendor.CUDA]


def test_strict_undefined_and_missing_template(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("FROM {{ nope }}\n")
    with pytest.raises(ImageError, match="'nope' is undefined"):
        images.render("t.j2", root=tmp_path)
    with pytest.raises(ImageError, match=r"no template missing\.j2"):
        images.render("missing.j2", root=tmp_path)


# --- inputs ----------------------------------------------------------------------------------


def test_base_image_precedence() -> None:
    env = {"MBCTL_BASE_IMAGE_CPU": "from-env:1"}
    assert images.base_image_name("cpu", {}, {}) == vendors.get("cpu").base_image
    assert images.base_image_name("cpu", {}, env) == "from-env:1"
    assert images.base_image_name("cpu", {Vendor.CPU: "flag:1"}, env) == "flag:1"


def test_parse_options() -> None:
    assert images.parse_base_images(["cpu=a:1", "rocm=b@sha256:x"]) == {
        Vendor.CPU: "a:1",
        Vendor.ROCM: "b@sha256:x",
    }
    assert images.parse_pairs(["A=1", "B=x=y"], "--build-arg") == {"A": "1", "B": "x=y"}
    with pytest.raises(ConfigError, match="unknown vendor 'tpu'"):
        images.parse_base_images(["tpu=x"])
    with pytest.raises(ConfigError, match="--build-arg 'A': expected KEY=VALUE"):
        images.parse_pairs(["A"], "--build-arg")
    with pytest.raises(ConfigError, match="is empty"):
        images.parse_base_images(["cpu="])


def test_build_options_check(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--ca-bundle"):
        images.BuildOptions(ca_bundle=tmp_path / "nope.pem").check()
    with pytest.raises(ConfigError, match="--wheelhouse"):
        images.BuildOptions(wheelhouse=tmp_path / "nope").check()
    with pytest.raises(ConfigError, match="--registry"):
        images.BuildOptions(registry="reg.example/").check()


def test_base_ref_pinning() -> None:
    ref = images.base_ref_of(
        "python:3.11-slim", "sha256:id", ["docker.io/library/python@" + DIGEST]
    )
    assert ref == images.BaseRef(name="python:3.11-slim", digest=DIGEST)
    assert ref.pinned == f"python:3.11-slim@{DIGEST}"
    mirrored = images.base_ref_of(
        "reg:5000/x/y:1", "sha256:id", ["other/z@" + OTHER, "reg:5000/x/y@" + DIGEST]
    )
    assert mirrored.digest == DIGEST
    local = images.base_ref_of("mbctl-test/python-base:bookworm", IMAGE_ID, [])
    assert (
        local.local
        and local.digest == IMAGE_ID
        and local.pinned == "mbctl-test/python-base:bookworm"
    )
    given = images.base_ref_of(f"x/y@{DIGEST}", IMAGE_ID, [])
    assert given.digest == DIGEST and given.pinned == f"x/y@{DIGEST}"


def test_requirements_per_vendor(tmp_path: Path) -> None:
    assert images.requirements_file(tmp_path, "cpu") is None
    (tmp_path / "requirements.txt").write_text("torch\n")
    assert images.requirements_file(tmp_path, "rocm") == tmp_path / "requirements.txt"
    (tmp_path / "requirements.rocm.txt").write_text("torch\n")
    assert images.requirements_file(tmp_path, "rocm") == tmp_path / "requirements.rocm.txt"
    assert images.requirements_file(tmp_path, "cpu") == tmp_path / "requirements.txt"


def test_image_names_of_the_smoke_suite() -> None:
    from orchestrator import config

    suite = config.load_suite(ROOT / "benchmarks" / "suites" / "smoke.yaml")
    names = images.image_names(suite, "cpu")
    assert len(names) == len(set(names))
    assert set(names) == {b.definition for b in suite.benchmarks}


@pytest.mark.parametrize("vendor", ["hpu", "xpu"])
def test_jax_is_left_out_where_the_vendor_has_no_plugin(vendor: str) -> None:
    from orchestrator import config
    from orchestrator.plan import make_plan, parse_devices

    suite = config.load_suite(ROOT / "benchmarks" / "suites" / "smoke.yaml")
    assert "jaxmlp" not in images.image_names(suite, vendor)
    assert set(images.unsupported(suite, vendor)) == {"jaxmlp"}
    assert images.unsupported(suite, "cuda") == {} and "jaxmlp" in images.image_names(suite, "rocm")
    plan = make_plan(suite, vendor=vendor, devices=parse_devices("1"))
    (skipped,) = plan.skipped
    assert skipped.bench == "jax-mlp" and skipped.reason.startswith(
        f"JAX is unsupported on {vendor}"
    )


# --- context, hash, tags ---------------------------------------------------------------------


@pytest.fixture
def bench_root(tmp_path: Path) -> Path:
    """A benchmarks folder with benchkit and two benchmarks (one with a vendor requirements file)."""
    kit = tmp_path / "benchkit"
    (kit / "benchkit").mkdir(parents=True)
    (kit / "pyproject.toml").write_text("[project]\nname = 'mbctl-benchkit'\n")
    (kit / "benchkit" / "__init__.py").write_text("")
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.py").write_text(f"print({name!r})\n")
        (tmp_path / name / "requirements.txt").write_text("torch\n")
    (tmp_path / "beta" / "requirements.cpu.txt").write_text("torch\nnumpy\n")
    return tmp_path


def plan(
    root: Path, options: images.BuildOptions | None = None, **kwargs: Any
) -> tuple[images.ImageSpec, list[images.ImageSpec]]:
    base = kwargs.pop("base", images.BaseRef(name="python:3.11-slim", digest=DIGEST))
    return images.plan_images(
        ["alpha", "beta"], "cpu", options or images.BuildOptions(), base, root=root, **kwargs
    )


def tags(root: Path, options: images.BuildOptions | None = None, **kwargs: Any) -> list[str]:
    base, specs = plan(root, options, **kwargs)
    return [base.tag, *(s.tag for s in specs)]


def test_tags_are_content_addressed(bench_root: Path) -> None:
    first = tags(bench_root, created="2020-01-01T00:00:00Z")
    # the build time is a label, not an input
    assert first == tags(bench_root, created="2030-01-01T00:00:00Z")
    assert first[0].startswith("localhost/mbctl/base:cpu-")
    assert (
        first[1].startswith("localhost/mbctl/alpha:cpu-") and len(first[1].rpartition("-")[2]) == 12
    )

    (bench_root / "alpha" / "main.py").write_text("print('changed')\n")
    second = tags(bench_root)
    assert second[0] == first[0] and second[2] == first[2] and second[1] != first[1]

    (bench_root / "benchkit" / "benchkit" / "__init__.py").write_text("# changed\n")
    third = tags(bench_root)
    assert third[0] == first[0] and third[1] != second[1] and third[2] != second[2]


def test_caches_and_leftovers_do_not_change_tags(bench_root: Path) -> None:
    before = tags(bench_root)
    (bench_root / "alpha" / "__pycache__").mkdir()
    (bench_root / "alpha" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (bench_root / "benchkit" / "mbctl_benchkit.egg-info").mkdir()
    (bench_root / "alpha" / ".hidden").write_text("x")
    assert tags(bench_root) == before


def test_options_and_base_change_every_tag(bench_root: Path, tmp_path: Path) -> None:
    before = tags(bench_root)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    variants = [
        tags(bench_root, images.BuildOptions(ca_bundle=ca)),
        tags(bench_root, images.BuildOptions(build_args={"PIP_INDEX_URL": "http://mirror/simple"})),
        tags(bench_root, images.BuildOptions(platform="linux/arm64")),
        tags(bench_root, base=images.BaseRef(name="python:3.11-slim", digest=OTHER)),
    ]
    for variant in variants:
        assert all(a != b for a, b in zip(before, variant, strict=True))
    ca.write_text("-----BEGIN CERTIFICATE-----\nother\n")
    assert tags(bench_root, images.BuildOptions(ca_bundle=ca)) != variants[0]
    elsewhere = tags(bench_root, images.BuildOptions(registry="reg:5000/lab"))
    assert elsewhere[1].startswith("reg:5000/lab/mbctl/alpha:cpu-")
    # the registry names where an image goes, not what it is: the same versions everywhere
    assert [t.rpartition(":")[2] for t in elsewhere] == [t.rpartition(":")[2] for t in before]


def test_a_dependency_lock_replaces_the_ranges_and_shapes_the_tag(bench_root: Path) -> None:
    before = tags(bench_root)
    lock = images.deps_lock_file(bench_root / "alpha", Vendor.CPU)
    lock.write_text("numpy==2.0.0 --hash=sha256:" + "a" * 64 + "\n")
    _, (alpha, _beta) = plan(bench_root)
    assert alpha.name == "alpha" and alpha.context["requirements.txt"] == lock
    assert "--require-hashes --no-deps --requirement" in alpha.dockerfile
    after = tags(bench_root)
    assert after[1] != before[1] and after[2:] == before[2:]  # only the locked image moves
    lock.write_text("numpy==2.0.1 --hash=sha256:" + "b" * 64 + "\n")
    assert tags(bench_root)[1] not in (after[1], before[1])


def test_wheelhouse_content_is_hashed(bench_root: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0-py3-none-any.whl").write_bytes(b"a")
    first = tags(bench_root, images.BuildOptions(wheelhouse=wheels))
    (wheels / "numpy-2.0-py3-none-any.whl").write_bytes(b"b")
    assert tags(bench_root, images.BuildOptions(wheelhouse=wheels)) != first


def test_benchmark_specs(bench_root: Path) -> None:
    base, (alpha, beta) = plan(bench_root)
    assert f"FROM {base.tag} AS install" in alpha.dockerfile
    assert f"FROM python:3.11-slim@{DIGEST} AS base" in base.dockerfile
    assert beta.context["requirements.txt"] == bench_root / "beta" / "requirements.cpu.txt"
    assert alpha.labels["mbctl.benchmark"] == "alpha" and "mbctl.benchmark" not in base.labels
    assert alpha.labels[f"{images.OCI}version"] == alpha.version == alpha.tag.rpartition(":")[2]


def test_missing_benchmark_and_bad_names(bench_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"main\.py does not exist"):
        images.plan_images(
            ["nope"], "cpu", images.BuildOptions(), images.BaseRef(name="x"), root=bench_root
        )
    with pytest.raises(ConfigError, match="cannot name an image"):
        images.image_tag("localhost", "Bad_Name", "cpu", "0" * 64)


def test_context_tar_is_deterministic(bench_root: Path) -> None:
    _, (alpha, _) = plan(bench_root)
    blobs = []
    for _ in range(2):
        buf = io.BytesIO()
        images.write_context(alpha.context, buf)
        blobs.append(buf.getvalue())
    assert blobs[0] == blobs[1]
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {
        "Dockerfile",
        "code/main.py",
        "benchkit/benchkit/__init__.py",
        "requirements.txt",
    } <= set(members)
    assert all(m.mtime == 0 and m.uid == 0 for m in members.values())


# --- labels ----------------------------------------------------------------------------------


def test_labels() -> None:
    labels = images.image_labels(
        name="matmul",
        vendor="cuda",
        version="cuda-0123456789ab",
        base=images.BaseRef(name="nvcr.io/nvidia/pytorch:25.01-py3", digest=DIGEST),
        created="2025-01-01T00:00:00Z",
        source=images.SourceInfo(revision="abc", url="https://git.example/lab/mbctl.git"),
    )
    assert labels == {
        "org.opencontainers.image.title": "matmul",
        "org.opencontainers.image.version": "cuda-0123456789ab",
        "org.opencontainers.image.created": "2025-01-01T00:00:00Z",
        "org.opencontainers.image.vendor": "mbctl",
        "org.opencontainers.image.source": "https://git.example/lab/mbctl.git",
        "org.opencontainers.image.revision": "abc",
        "org.opencontainers.image.base.name": "nvcr.io/nvidia/pytorch:25.01-py3",
        "org.opencontainers.image.base.digest": DIGEST,
        "mbctl.benchmark": "matmul",
        "mbctl.vendor": "cuda",
    }
    local = images.image_labels(
        name="x",
        vendor="cpu",
        version="v",
        base=images.BaseRef(name="b", digest=IMAGE_ID, local=True),
        created="t",
    )
    assert local["mbctl.base.local"] == "true" and "org.opencontainers.image.revision" not in local


def test_source_url_loses_credentials(tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "remote",
            "add",
            "origin",
            "https://user:s3cret@git.example/lab/mbctl.git",
        ],
        check=True,
    )
    info = images.source_info(tmp_path)
    assert info.url == "https://git.example/lab/mbctl.git" and info.revision is None
    assert images.source_info(tmp_path / "missing") == images.SourceInfo()


def test_build_time_honours_source_date_epoch() -> None:
    assert images.build_time({"SOURCE_DATE_EPOCH": "0"}) == "1970-01-01T00:00:00Z"
    assert images.build_time({}).endswith("Z")


# --- the lock --------------------------------------------------------------------------------


def entry(
    repo: str = "reg:5000/mbctl/matmul", digest: str = DIGEST, image_id: str = IMAGE_ID
) -> images.LockEntry:
    return images.LockEntry(
        ref=f"{repo}@{digest}",
        image_id=image_id,
        base=images.LockBase(name="python:3.11-slim", digest=OTHER),
        labels={"mbctl.vendor": "cpu", "org.opencontainers.image.title": "matmul"},
    )


def test_lock_round_trip_and_determinism(tmp_path: Path) -> None:
    a = images.Lock().updated(
        "cpu", {"matmul": entry(), "convnet": entry("reg:5000/mbctl/convnet")}
    )
    a = a.updated("cuda", {"matmul": entry(digest=OTHER)})
    b = images.Lock().updated("cuda", {"matmul": entry(digest=OTHER)})
    b = b.updated("cpu", {"convnet": entry("reg:5000/mbctl/convnet"), "matmul": entry()})
    assert images.dump_lock(a) == images.dump_lock(b)  # insertion order does not matter
    path = tmp_path / "sub" / "images.lock.yaml"
    images.write_lock(a, path)
    assert images.read_lock(path) == a
    assert path.read_text() == images.dump_lock(a)
    text = path.read_text()
    assert text.index("convnet:") < text.index("matmul:") and text.index("  cpu:") < text.index(
        "  cuda:"
    )
    assert [(n, v.value) for n, v, _ in a.entries()] == [
        ("convnet", "cpu"),
        ("matmul", "cpu"),
        ("matmul", "cuda"),
    ]
    assert not list(tmp_path.glob("sub/.*.tmp"))


def test_lock_update_replaces_one_vendor_only() -> None:
    lock = (
        images.Lock()
        .updated("cpu", {"matmul": entry()})
        .updated("cuda", {"matmul": entry(digest=OTHER)})
    )
    lock = lock.updated("cpu", {"matmul": entry(image_id="sha256:" + "4" * 64)})
    assert lock.entry("matmul", "cpu").image_id == "sha256:" + "4" * 64  # type: ignore[union-attr]
    assert lock.entry("matmul", "cuda").digest == OTHER  # type: ignore[union-attr]
    assert lock.entry("convnet", "cpu") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "version: 1\nimages:\n  matmul:\n    cpu:\n      ref: reg/mbctl/matmul:cpu-abc\n"
            f"      image_id: {IMAGE_ID}\n      base: {{name: b, digest: {DIGEST}}}\n",
            r":5: images\.matmul\.cpu\.ref: 'reg/mbctl/matmul:cpu-abc' has no digest",
        ),
        (
            f"images:\n  matmul:\n    cpu:\n      ref: r@{DIGEST}\n      image_id: 42\n      base: {{name: b, digest: {DIGEST}}}\n",
            r":5: images\.matmul\.cpu\.image_id",
        ),
        (f"images:\n  matmul:\n    tpu:\n      ref: r@{DIGEST}\n", r"images\.matmul\.tpu"),
        ("version: 2\n", r":1: version"),
        ("images: {}\nextra: 1\n", r":2: extra: unknown key"),
        ("images: [\n", "invalid YAML"),
        ("- a\n", "images lock must be a mapping"),
    ],
    ids=[
        "no-digest",
        "bad-image-id",
        "bad-vendor",
        "version",
        "unknown-key",
        "yaml",
        "not-mapping",
    ],
)
def test_bad_lock(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "images.lock.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        images.read_lock(path)
    assert info.value.exit_code == 2


def test_missing_lock(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no images lock at"):
        images.read_lock(tmp_path / "images.lock.yaml")


# --- the SDK, faked: the control flow around build, push, pull --------------------------------


class FakeImage:
    def __init__(
        self, image_id: str, labels: dict[str, str] | None = None, tags: list[str] | None = None
    ) -> None:
        self.id = image_id
        self.labels = labels or {}
        self.tags = tags or []
        self.attrs: dict[str, Any] = {"RepoDigests": [], "Created": "2025-01-01T00:00:00Z"}
        self.tagged: list[tuple[str, str]] = []

    def tag(self, repository: str, tag: str) -> bool:
        self.tagged.append((repository, tag))
        return True


class FakeImages:
    def __init__(self, known: dict[str, FakeImage]) -> None:
        self.known = known

    def get(self, ref: str) -> FakeImage:
        import docker.errors

        if ref not in self.known:
            raise docker.errors.ImageNotFound(ref)
        return self.known[ref]

    def list(self, filters: dict[str, list[str]]) -> list[FakeImage]:
        wanted = set(filters["label"])
        return [
            i for i in self.known.values() if wanted <= {f"{k}={v}" for k, v in i.labels.items()}
        ]


class FakeAPI:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.calls: list[str] = []

    def build(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(f"build {kwargs['tag']}")
        yield from self.events

    def push(self, repository: str, tag: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(f"push {repository}:{tag}")
        yield from self.events

    def pull(self, repository: str, tag: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        self.calls.append(f"pull {repository}@{tag}")
        self.client.images.known[f"{repository}@{tag}"] = self.client.pulled
        yield {"status": "Pull complete", "id": "abc"}


class FakeClient:
    def __init__(self, known: dict[str, FakeImage] | None = None) -> None:
        self.images = FakeImages(known or {})
        self.api = FakeAPI(self)
        self.pulled = FakeImage(IMAGE_ID)


def test_build_failure_names_the_step_and_keeps_the_tail(bench_root: Path) -> None:
    _, (alpha, _) = plan(bench_root)
    client = FakeClient()
    client.api.events = [
        {"stream": "Step 1/9 : FROM base AS install\n"},
        *({"stream": f"line {i}\n"} for i in range(30)),
        {"stream": "Step 5/9 : RUN python -m pip install torch\n"},
        {"stream": " ---> Running in 0123456789ab\n"},
        {"stream": "\x1b[91mERROR: No matching distribution found for torch\n\x1b[0m"},
        {
            "error": "The command '/bin/sh -c python -m pip install torch' returned a non-zero code: 1"
        },
    ]
    seen: list[str] = []
    with pytest.raises(images.BuildFailed) as info:
        images.build_image(client, alpha, log=lambda name, line: seen.append(line))
    error = info.value
    assert error.exit_code == 4 and error.image == "alpha"
    assert error.step == "Step 5/9 : RUN python -m pip install torch"
    assert (
        len(error.tail) == images.LOG_TAIL
        and error.tail[-1] == "ERROR: No matching distribution found for torch"
    )
    assert str(error).startswith(
        "build of alpha (cpu) failed at Step 5/9 : RUN python -m pip install torch: "
        "the command exited with code 1\n  | "
    )
    assert "line 29" in seen


def test_existing_tags_are_not_rebuilt(bench_root: Path) -> None:
    base, specs = plan(bench_root)
    client = FakeClient({specs[0].tag: FakeImage("sha256:a"), base.tag: FakeImage("sha256:b")})
    client.api.events = [{"stream": "Step 1/1 : FROM x\n"}, {"aux": {"ID": "sha256:new"}}]
    done = images.build_images(client, base, specs)
    assert client.api.calls == [f"build {specs[1].tag}"]  # base existed, alpha existed
    assert [(d.spec.name, d.cached, d.image_id) for d in done] == [
        ("base", True, "sha256:b"),
        ("alpha", True, "sha256:a"),
        ("beta", False, "sha256:new"),
    ]
    client = FakeClient({specs[0].tag: FakeImage("sha256:a"), specs[1].tag: FakeImage("sha256:c")})
    assert [d.cached for d in images.build_images(client, base, specs)] == [True, True]
    assert client.api.calls == []  # nothing to build: the base is not even looked at


def built_labels() -> dict[str, str]:
    return {
        "mbctl.benchmark": "matmul",
        "mbctl.vendor": "cpu",
        "mbctl.volumes": "/data,/results",
        f"{images.OCI}version": "cpu-0123456789ab",
        f"{images.OCI}base.name": "mbctl-test/python-base:bookworm",
        f"{images.OCI}base.digest": OTHER,
        f"{images.OCI}description": "inherited from the base image",
        "mbctl.base.local": "true",
    }


def test_push_records_the_digest_and_only_our_labels() -> None:
    image = FakeImage(IMAGE_ID, built_labels(), ["localhost/mbctl/matmul:cpu-0123456789ab"])
    client = FakeClient({"x": image})
    client.api.events = [
        {"status": "Pushed", "id": "l1"},
        {"aux": {"Tag": "cpu-0123456789ab", "Digest": DIGEST, "Size": 1}},
    ]
    entries = images.push_images(client, ["matmul"], "cpu", "reg:5000")
    got = entries["matmul"]
    assert got.ref == f"reg:5000/mbctl/matmul@{DIGEST}" and got.image_id == IMAGE_ID
    assert got.base == images.LockBase(
        name="mbctl-test/python-base:bookworm", digest=OTHER, local=True
    )
    assert (
        f"{images.OCI}description" not in got.labels
        and got.labels["mbctl.volumes"] == "/data,/results"
    )
    assert image.tagged == [("reg:5000/mbctl/matmul", "cpu-0123456789ab")]


def test_push_refused_by_the_registry() -> None:
    client = FakeClient({"x": FakeImage(IMAGE_ID, built_labels())})
    client.api.events = [
        {
            "error": "no basic auth credentials",
            "errorDetail": {"message": "no basic auth credentials"},
        }
    ]
    with pytest.raises(
        ImageError, match=r"push of reg:5000/mbctl/matmul:cpu-0123456789ab failed: no basic auth"
    ) as info:
        images.push_images(client, ["matmul"], "cpu", "reg:5000")
    assert "docker login reg:5000" in str(info.value)


def test_push_without_a_built_image() -> None:
    with pytest.raises(ImageError, match="no cpu image of matmul in the engine"):
        images.push_images(FakeClient(), ["matmul"], "cpu", "reg:5000")


def test_push_takes_the_image_the_current_tree_builds() -> None:
    older = FakeImage("sha256:" + "4" * 64, built_labels())
    newer = FakeImage(IMAGE_ID, {**built_labels(), f"{images.OCI}version": "cpu-ffffffffffff"})
    newer.attrs["Created"] = "2026-01-01T00:00:00Z"
    client = FakeClient({"old": older, "new": newer})
    client.api.events = [{"aux": {"Tag": "cpu-0123456789ab", "Digest": DIGEST, "Size": 1}}]
    entries = images.push_images(
        client, ["matmul"], "cpu", "reg:5000", versions={"matmul": "cpu-0123456789ab"}
    )
    assert entries["matmul"].image_id == older.id  # not the newest: the one of this tree
    with pytest.raises(ImageError, match=r"\(cpu-aaaaaaaaaaaa\) is not in the engine; it has "):
        images.push_images(
            client, ["matmul"], "cpu", "reg:5000", versions={"matmul": "cpu-aaaaaaaaaaaa"}
        )


def test_lock_mixed_with_a_registry_fallback_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from orchestrator import config

    suite = config.load_suite(ROOT / "benchmarks" / "suites" / "smoke.yaml")
    first = suite.benchmarks[0]
    lock = tmp_path / "images.lock.yaml"
    images.write_lock(images.Lock().updated("cpu", {first.definition: entry("r/mbctl/x")}), lock)
    with caplog.at_level("WARNING", logger="mbctl.images"):
        refs = images.image_refs(suite, "cpu", registry="reg", lock=lock)
    assert refs[first.name].startswith("r/mbctl/x@")
    others = [b.name for b in suite.benchmarks[1:]]
    assert caplog.messages == [
        f"warning: {', '.join(others)} not in {lock}: using the floating registry tag "
        "reg/mbctl/<folder>:cpu (not pinned by digest)"
    ]
    caplog.clear()
    images.image_refs(suite, "cpu", registry="reg")  # no lock: nothing mixed, nothing said
    images.image_refs(suite, "cpu", lock=lock)
    assert caplog.messages == []


def test_verify_and_resolve_compare_image_ids() -> None:
    lock = images.Lock().updated(
        "cpu", {"matmul": entry(), "convnet": entry("reg:5000/mbctl/convnet", image_id=OTHER)}
    )
    client = FakeClient()
    results = {r.name: r for r in images.verify_lock(client, lock)}
    assert results["matmul"].ok and "matches" in results["matmul"].detail
    assert not results["convnet"].ok and f"the lock says {OTHER}" in results["convnet"].detail
    assert f"pull reg:5000/mbctl/matmul@{DIGEST}" in client.api.calls
    assert images.verify_lock(client, lock, vendor="cuda") == []

    refs = images.resolve_images(lock, "cpu", ["matmul"], client=client)
    assert refs == {"matmul": f"reg:5000/mbctl/matmul@{DIGEST}"}
    with pytest.raises(ImageError, match="has image ID"):
        images.resolve_images(lock, "cpu", ["convnet"], client=client)


def test_resolve_images_maps_benchmarks_to_their_folder() -> None:
    from orchestrator import config

    suite = config.load_suite(ROOT / "benchmarks" / "suites" / "smoke.yaml")
    lock = images.Lock().updated(
        "cpu", {b.definition: entry(f"r/mbctl/{b.definition}") for b in suite.benchmarks}
    )
    refs = images.resolve_images(lock, "cpu", suite.benchmarks)
    assert set(refs) == set(suite.names())
    assert all(
        ref.startswith(f"r/mbctl/{suite.get(name).definition}@") for name, ref in refs.items()
    )
    with pytest.raises(ImageError, match="no cuda image of") as info:
        images.resolve_images(lock, "cuda", suite.benchmarks)
    assert info.value.exit_code == 4


# --- CLI wiring ------------------------------------------------------------------------------

runner = CliRunner()


def test_build_dry_run_prints_tags_and_dockerfiles(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(timeout: int = 600) -> Any:
        raise BackendUnavailable("cannot reach the Docker engine")

    monkeypatch.setattr(images, "engine", unreachable)
    result = runner.invoke(app, ["build", "--vendor", "cpu", "--select", "fp32", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert (
        "localhost/mbctl/base:cpu-" in result.stdout
        and "localhost/mbctl/matmul:cpu-" in result.stdout
    )
    assert 'ENTRYPOINT ["python", "main.py"]' in result.stdout
    assert "FROM is not pinned" in result.stderr


def test_build_without_an_engine_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    result = runner.invoke(app, ["build", "--vendor", "cpu", "--select", "fp32"])
    assert result.exit_code == 3, result.output
    assert f"Docker engine not reachable at unix://{tmp_path}/no.sock" in result.stderr
    assert "start dockerd (make docker-up) or set DOCKER_HOST" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["lock", "deps", "--vendor", "cpu", "--select", "fp32"],
        ["lock", "verify", "--rebuild", "--vendor", "cpu", "--select", "fp32"],
        ["push", "--registry", "reg:5000", "--vendor", "cpu", "--select", "fp32"],
    ],
    ids=["deps", "rebuild", "push"],
)
def test_engine_commands_without_an_engine_exit_3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str]
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    result = runner.invoke(app, argv)
    assert result.exit_code == 3, result.output
    assert f"Docker engine not reachable at unix://{tmp_path}/no.sock" in result.stderr


def test_lock_commands(tmp_path: Path) -> None:
    from orchestrator.cli import images as images_cli

    assert images_cli.DEFAULT_LOCK == images.LOCK_FILE
    path = tmp_path / "images.lock.yaml"
    images.write_lock(images.Lock().updated("cpu", {"matmul": entry()}), path)
    shown = runner.invoke(app, ["lock", "show", str(path), "--format", "json"])
    assert shown.exit_code == 0 and DIGEST in shown.stdout
    missing = runner.invoke(app, ["lock", "verify", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "no images lock at" in missing.stderr
    bad_option = runner.invoke(
        app, ["build", "--vendor", "cpu", "--base-image", "tpu=x", "--dry-run"]
    )
    assert bad_option.exit_code == 2 and "unknown vendor 'tpu'" in bad_option.stderr
