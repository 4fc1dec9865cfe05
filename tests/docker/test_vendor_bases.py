"""The real templates on stand-ins of each vendor's base: the final image keeps the vendor's framework.

Each stand-in (tests/infra/standins/) lays out Python as its vendor does: NGC's system dist-packages
with PIP_CONSTRAINT, ROCm's conda env first on PATH, Gaudi's system Python with a 2.x.0a0+git torch,
Intel's IPEX next to torch's XPU build. The benchmark asks for ``torch>=2.4`` and the wheelhouse
offers a plain ``torch 2.6.0``: an install stage that pins only its own venv (mbctl before issue 12)
installs that torch over ROCm's, Gaudi's and Intel's, and these tests fail.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
from imagesupport import ROOT
from standins import EXPECTED, PROBE, build_standin, make_wheelhouse

from orchestrator import images
from orchestrator.errors import ConfigError
from orchestrator.vendors import Vendor

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PROBE_BENCH = "probe"


@pytest.fixture(scope="session")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """benchkit and jaxmlp from the tree, and a torch benchmark that wants a newer torch."""
    root = tmp_path_factory.mktemp("benchmarks")
    (root / "benchkit").symlink_to(ROOT / "benchmarks" / "benchkit")
    (root / "jaxmlp").symlink_to(ROOT / "benchmarks" / "jaxmlp")
    probe = root / PROBE_BENCH
    probe.mkdir()
    (probe / "main.py").write_text("import torch\n")
    (probe / "bench.yaml").write_text("name: probe\nframework: torch\n")
    (probe / "requirements.txt").write_text("torch>=2.4\n")
    return root


@pytest.fixture(scope="session")
def stub_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


def _build(
    client: Any, vendor: str, base_image: str, root: Path, wheels: Path, names: list[str]
) -> dict[str, str]:
    standin = build_standin(client, vendor, base_image)
    options = images.BuildOptions(
        base_images={Vendor(vendor): standin}, wheelhouse=wheels, registry="mbctl-test"
    )
    base = images.resolve_base(client, standin)
    base_spec, specs = images.plan_images(names, vendor, options, base, root=root)
    built = images.build_images(client, base_spec, specs, network="none")
    return {b.spec.name: b.spec.tag for b in built}


def _probe(client: Any, tag: str, *modules: str) -> dict[str, Any]:
    output = client.containers.run(
        tag, ["-c", PROBE, *modules], entrypoint=["python"], remove=True, network_disabled=True
    )
    return dict(json.loads(output.decode().strip().splitlines()[-1]))


@pytest.mark.parametrize("vendor", ["cuda", "rocm", "hpu", "xpu"])
def test_final_image_imports_the_vendor_framework(
    docker_client: Any, base_image: str, bench_root: Path, stub_wheels: Path, vendor: str
) -> None:
    expected = EXPECTED[vendor]
    jax = expected["jax_plugin"] is not None
    names = [PROBE_BENCH, "jaxmlp"] if jax else [PROBE_BENCH]
    tags = _build(docker_client, vendor, base_image, bench_root, stub_wheels, names)

    found = _probe(docker_client, tags[PROBE_BENCH], *expected["extra"])
    assert (found["version"], found["path"]) == (expected["version"], expected["path"])
    key, value = expected["build"]
    assert found["build"][key] == value
    assert found["extra"] == expected["extra"]
    # one torch only: the vendor's, not a second copy shadowing it from the venv
    assert found["torch_dists"] == [str(Path(expected["path"]).parent.parent)]
    if jax:
        plugins = _probe(docker_client, tags["jaxmlp"])["jax_plugins"]
        assert plugins[expected["jax_plugin"]] and plugins["jaxlib"] == "0.6.2"


@pytest.mark.parametrize("vendor", ["hpu", "xpu"])
def test_jax_is_unsupported_where_the_vendor_has_no_plugin(
    bench_root: Path, stub_wheels: Path, vendor: str
) -> None:
    options = images.BuildOptions(wheelhouse=stub_wheels)
    with pytest.raises(ConfigError, match=f"uses JAX, which is unsupported on {vendor}"):
        images.plan_images(["jaxmlp"], vendor, options, images.BaseRef("x"), root=bench_root)


def test_installed_pycs_are_hash_based(
    docker_client: Any, base_image: str, bench_root: Path, stub_wheels: Path
) -> None:
    """PEP 552 checked-hash pycs: no build time inside the installed files."""
    tags = _build(docker_client, "rocm", base_image, bench_root, stub_wheels, [PROBE_BENCH])
    script = (
        "import benchkit, glob, importlib.util, os; "
        "d = os.path.join(os.path.dirname(benchkit.__file__), '__pycache__'); "
        "print(*sorted({open(p, 'rb').read(8)[4:8].hex() for p in glob.glob(d + '/*.pyc')}))"
    )
    output = docker_client.containers.run(
        tags[PROBE_BENCH], ["-c", script], entrypoint=["python"], remove=True
    )
    flags = {struct.unpack("<I", bytes.fromhex(word))[0] for word in output.decode().split()}
    assert flags == {0b11}  # hash-based (bit 0) and checked (bit 1)


def test_preflight_of_an_image_on_a_host_without_its_device(
    docker_client: Any, base_image: str, bench_root: Path, stub_wheels: Path
) -> None:
    """doctor's in-image part: ROCm's torch in the image, no AMD GPU here: one clear failure."""
    from types import SimpleNamespace

    from orchestrator.backends.docker import DockerBackend
    from orchestrator.doctor import image_preflight
    from orchestrator.errors import ImageError

    tag = _build(docker_client, "rocm", base_image, bench_root, stub_wheels, [PROBE_BENCH])[
        PROBE_BENCH
    ]
    checks = {c.name: c for c in image_preflight(docker_client, tag, "rocm")}
    where = "torch 2.3.0+rocm6.2.3 at /opt/conda/envs/py_3.11/lib/python3.11/site-packages/torch"
    assert not checks["framework"].ok
    assert checks["framework"].detail.startswith(f"{where} sees no ROCm device")
    assert not checks["telemetry"].ok  # the stand-in's amdsmi finds no driver
    assert all(c.ok for c in image_preflight(docker_client, tag, "cpu"))

    backend = DockerBackend(client=docker_client)
    job = SimpleNamespace(vendor="rocm", devices=())
    message = re.escape(f"image {tag} cannot run rocm jobs: framework: {where} sees no ROCm")
    with pytest.raises(ImageError, match=message):
        backend._preflight(job, tag)  # type: ignore[arg-type]
    backend._preflight(job, tag)  # once per image: the second job is not held up again


def test_dependency_lock_is_resolved_in_the_base_and_installed_with_hashes(
    docker_client: Any, base_image: str, stub_wheels: Path, tmp_path: Path
) -> None:
    import hashlib
    import shutil

    root = tmp_path / "benchmarks"
    root.mkdir()
    (root / "benchkit").symlink_to(ROOT / "benchmarks" / "benchkit")
    shutil.copytree(ROOT / "benchmarks" / "jaxmlp", root / "jaxmlp")
    (root / PROBE_BENCH).mkdir()
    (root / PROBE_BENCH / "main.py").write_text("import torch\n")
    (root / PROBE_BENCH / "requirements.txt").write_text("torch>=2.4\n")
    standin = build_standin(docker_client, "rocm", base_image)
    options = images.BuildOptions(
        base_images={Vendor.ROCM: standin}, wheelhouse=stub_wheels, registry="mbctl-test"
    )
    base = images.resolve_base(docker_client, standin)

    written = images.lock_dependencies(
        docker_client, ["jaxmlp", PROBE_BENCH], "rocm", options, base, root=root
    )
    assert written[PROBE_BENCH][1] == 0  # torch is the base's: nothing to add
    lock = written["jaxmlp"][0]
    assert lock == root / "jaxmlp" / "requirements.rocm.lock"

    def pin(name: str, version: str, wheel: str) -> str:
        digest = hashlib.sha256((stub_wheels / wheel).read_bytes()).hexdigest()
        return f"{name}=={version} --hash=sha256:{digest}"

    body = [line for line in lock.read_text().splitlines() if not line.startswith("#")]
    assert body == [
        pin("jax", "0.6.2", "jax-0.6.2-py3-none-any.whl"),
        pin("jax-rocm60-pjrt", "0.6.0", "jax_rocm60_pjrt-0.6.0-py3-none-any.whl"),
        pin("jax-rocm60-plugin", "0.6.0", "jax_rocm60_plugin-0.6.0-py3-none-any.whl"),
        pin("jaxlib", "0.6.2", "jaxlib-0.6.2-py3-none-any.whl"),
    ]

    base_spec, (spec,) = images.plan_images(["jaxmlp"], "rocm", options, base, root=root)
    assert "--require-hashes --no-deps" in spec.dockerfile
    images.build_images(docker_client, base_spec, [spec], network="none")
    assert _probe(docker_client, spec.tag)["jax_plugins"]["jax-rocm60-plugin"] == "0.6.0"

    # two builds from the same lock and wheelhouse install the same files
    (again,) = images.rebuild_and_compare(docker_client, base_spec, [spec], network="none")
    assert again.ok and again.files > 20, again.differing
    print(
        f"rebuild of {spec.tag}: {again.files} files identical, same image ID: {again.same_image_id}"
    )

    lock.write_text(lock.read_text().replace(body[0][-64:], "0" * 64))
    _, (tampered,) = images.plan_images(["jaxmlp"], "rocm", options, base, root=root)
    with pytest.raises(images.BuildFailed, match="DO NOT MATCH THE HASHES"):
        images.build_images(docker_client, base_spec, [tampered], network="none")
