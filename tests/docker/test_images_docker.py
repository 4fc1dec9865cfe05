"""Images against a real engine and real local registries: build, labels, no-op rebuild, push, lock, verify."""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from imagesupport import NAMES, ROOT, AuthRegistry, CpuBuild, cpu_options
from typer.testing import CliRunner

from orchestrator import images
from orchestrator.cli.main import app
from orchestrator.errors import ImageError
from orchestrator.vendors import Vendor

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_images_carry_labels_and_layout(docker_client: Any, cpu_build: CpuBuild) -> None:
    base_id = docker_client.images.get(cpu_build.base.name).id
    for spec in cpu_build.specs:
        image = docker_client.images.get(spec.tag)
        labels = image.labels
        assert labels["org.opencontainers.image.title"] == spec.name == labels["mbctl.benchmark"]
        assert labels["org.opencontainers.image.version"] == spec.tag.rpartition(":")[2]
        assert labels["mbctl.vendor"] == "cpu" and labels["mbctl.volumes"] == "/data,/results"
        assert labels["org.opencontainers.image.base.name"] == cpu_build.base.name
        # an imported image has no repo digest: its image ID is recorded, and said to be one
        assert labels["org.opencontainers.image.base.digest"] == base_id
        assert labels["mbctl.base.local"] == "true"
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"]
        )
        config = image.attrs["Config"]
        assert config["Entrypoint"] == ["python", "main.py"]
        assert config["WorkingDir"] == "/opt/mbctl/benchmark"


def test_image_runs_as_an_arbitrary_user(docker_client: Any, cpu_build: CpuBuild) -> None:
    matmul = next(s for s in cpu_build.specs if s.name == "matmul")
    args = ["--size", "64", "--warmup", "1", "--measures", "2", "--every", "2"]
    output = docker_client.containers.run(
        matmul.tag, args, user="12345:0", remove=True, network_disabled=True
    )
    events = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "end"
    assert any(e["event"] == "rate" and e["units"] == "TFLOPS" for e in events)
    check = "touch /data/x /results/x $HOME/x && python -c 'import benchkit, numpy, torch'"
    docker_client.containers.run(
        matmul.tag, entrypoint=["sh", "-c", check], user="12345:0", remove=True
    )


def test_rebuild_is_a_noop(
    docker_client: Any,
    cpu_build: CpuBuild,
    base_image: str,
    wheelhouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = images.resolve_base(docker_client, base_image)
    base_spec, specs = images.plan_images(
        list(NAMES), Vendor.CPU, cpu_options(base_image, wheelhouse), base, root=ROOT / "benchmarks"
    )
    assert [s.tag for s in specs] == [s.tag for s in cpu_build.specs]  # new build time, same tags
    assert base_spec.tag == cpu_build.base_spec.tag

    def no_build(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("an existing tag was rebuilt")

    monkeypatch.setattr(images.build, "build_image", no_build)
    started = time.monotonic()
    again = images.build_images(docker_client, base_spec, specs)
    assert all(b.cached for b in again) and time.monotonic() - started < 5
    first = {b.spec.tag: b.image_id for b in cpu_build.built}
    assert all(first[b.spec.tag] == b.image_id for b in again)


def test_a_failing_build_names_the_step(
    docker_client: Any, cpu_build: CpuBuild, base_image: str, wheelhouse: Path, tmp_path: Path
) -> None:
    shutil.copytree(ROOT / "benchmarks" / "benchkit", tmp_path / "benchkit")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "main.py").write_text("print('never runs')\n")
    (tmp_path / "broken" / "requirements.txt").write_text("mbctl-no-such-package==1.0\n")
    options = cpu_options(base_image, wheelhouse)
    base_spec, (spec,) = images.plan_images(
        ["broken"], Vendor.CPU, options, cpu_build.base, root=tmp_path
    )
    assert base_spec.tag == cpu_build.base_spec.tag  # the base is shared: not rebuilt
    with pytest.raises(images.BuildFailed) as info:
        images.build_images(docker_client, base_spec, [spec])
    error = info.value
    assert error.exit_code == 4 and error.image == "broken"
    assert error.step is not None and "--requirement /tmp/mbctl/requirements.txt" in error.step
    assert any("mbctl-no-such-package" in line for line in error.tail)
    assert "build of broken (cpu) failed at Step" in str(error)


def test_a_pulled_base_is_pinned_by_its_registry_digest(
    docker_client: Any, base_image: str, registry: str
) -> None:
    mirrored = f"{registry}/mbctl-test/python-base:bookworm"
    docker_client.images.get(base_image).tag(mirrored)
    pushed = [e for e in docker_client.api.push(mirrored, stream=True, decode=True) if "aux" in e]
    digest = pushed[-1]["aux"]["Digest"]
    docker_client.images.remove(mirrored)
    try:
        ref = images.resolve_base(docker_client, mirrored)  # not in the engine: pulled, then pinned
        assert ref == images.BaseRef(name=mirrored, digest=digest, local=False)
        assert ref.pinned == f"{mirrored}@{digest}"
        dockerfile = images.render_base(Vendor.CPU, ref)
        assert f"FROM {mirrored}@{digest} AS base" in dockerfile
    finally:
        docker_client.images.remove(mirrored)


def test_push_lock_and_verify_by_digest(
    docker_client: Any, cpu_build: CpuBuild, registry: str, tmp_path: Path
) -> None:
    built = {b.spec.name: b for b in cpu_build.built}
    # push exactly this session's builds: the engine may hold newer ones (make run-docker)
    entries = {
        name: images.push_image(
            docker_client, docker_client.images.get(built[name].image_id), name, registry
        )
        for name in NAMES
    }
    for name, entry in entries.items():
        assert re.fullmatch(rf"{re.escape(registry)}/mbctl/{name}@sha256:[0-9a-f]{{64}}", entry.ref)
        assert entry.image_id == built[name].image_id
        assert entry.base.name == cpu_build.base.name and entry.base.local
    path = tmp_path / "images.lock.yaml"
    images.write_lock(images.Lock().updated(Vendor.CPU, entries), path)
    lock = images.read_lock(path)

    # verify must pull: nothing of these images is left in the engine
    for name in NAMES:
        docker_client.images.remove(built[name].image_id, force=True)
    try:
        results = images.verify_lock(docker_client, lock)
        assert [(r.name, r.ok) for r in results] == sorted((n, True) for n in NAMES), results
        assert images.resolve_images(lock, "cpu", list(NAMES), client=docker_client) == {
            name: entries[name].ref for name in NAMES
        }
    finally:
        for name in NAMES:  # the same image again under its build tag, for the tests that follow
            image = images.find_image(docker_client, entries[name].ref) or images.pull(
                docker_client, entries[name].ref
            )
            repository, _, tag = built[name].spec.tag.rpartition(":")
            image.tag(repository, tag)

    matmul = lock.entry("matmul", "cpu")
    assert matmul is not None
    wrong_digest = matmul.digest[:-1] + ("0" if matmul.digest[-1] != "0" else "1")
    tampered = lock.updated(
        "cpu", {"matmul": matmul.model_copy(update={"ref": f"{matmul.repository}@{wrong_digest}"})}
    )
    (result,) = [r for r in images.verify_lock(docker_client, tampered) if r.name == "matmul"]
    assert not result.ok and "cannot pull" in result.detail and "manifest unknown" in result.detail

    other_id = entries["convnet"].image_id
    swapped = lock.updated("cpu", {"matmul": matmul.model_copy(update={"image_id": other_id})})
    with pytest.raises(ImageError, match=f"the lock says {other_id}"):
        images.resolve_images(swapped, "cpu", ["matmul"], client=docker_client)
    images.write_lock(swapped, path)
    result = CliRunner().invoke(app, ["lock", "verify", str(path)])
    assert result.exit_code == 4, result.output
    assert "1 of 2 locked images failed verification" in result.stderr


def tiny_image(docker_client: Any) -> images.ImageSpec:
    """An mbctl-labelled image of a few bytes: the auth tests push it, not a 1 GB benchmark."""
    base = images.BaseRef(name="scratch", digest="sha256:" + "0" * 64, local=True)
    tag = f"localhost/mbctl/tiny:cpu-{'0' * 12}"
    spec = images.ImageSpec(
        name="tiny",
        vendor=Vendor.CPU,
        tag=tag,
        dockerfile="FROM scratch\nCOPY hello /hello\n",
        context={"Dockerfile": b"FROM scratch\nCOPY hello /hello\n", "hello": b"hello\n"},
        labels=images.image_labels(
            name="tiny", vendor="cpu", version=f"cpu-{'0' * 12}", base=base, created="now"
        ),
        base=base,
    )
    images.build_image(docker_client, spec)
    return spec


def test_push_needs_a_login_on_an_auth_registry(
    docker_client: Any, auth_registry: AuthRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = tiny_image(docker_client)
    image_id = docker_client.images.get(spec.tag).id
    try:
        # no credentials at all: an empty Docker config, whatever the developer's own holds
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty"))
        with pytest.raises(ImageError, match="no basic auth credentials") as info:
            images.push_images(images.engine(), ["tiny"], "cpu", auth_registry.address)
        assert f"docker login {auth_registry.address}" in str(info.value)
        assert auth_registry.password not in str(info.value)

        config = tmp_path / "logged-in"
        config.mkdir()
        token = base64.b64encode(f"{auth_registry.user}:{auth_registry.password}".encode()).decode()
        (config / "config.json").write_text(
            json.dumps({"auths": {auth_registry.address: {"auth": token}}})
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        entries = images.push_images(images.engine(), ["tiny"], "cpu", auth_registry.address)
        assert entries["tiny"].ref.startswith(f"{auth_registry.address}/mbctl/tiny@sha256:")
        assert auth_registry.password not in images.dump_lock(images.Lock().updated("cpu", entries))
    finally:  # every tag of it, the registry's included
        docker_client.images.remove(image_id, force=True)


def test_cli_push_takes_the_image_the_current_tree_builds(
    cpu_build: CpuBuild, base_image: str, wheelhouse: Path, registry: str, tmp_path: Path
) -> None:
    from imagesupport import HOST_CA

    lock = tmp_path / "images.lock.yaml"
    argv = [
        "push",
        "--registry",
        registry,
        "--vendor",
        "cpu",
        "--select",
        "fp32",
        "--lock",
        str(lock),
    ]
    argv += ["--base-image", f"cpu={base_image}", "--wheelhouse", str(wheelhouse)]
    if HOST_CA.is_file():
        argv += ["--ca-bundle", str(HOST_CA)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    (matmul,) = [b for b in cpu_build.built if b.spec.name == "matmul"]
    entry = images.read_lock(lock).entry("matmul", "cpu")
    assert entry is not None and entry.image_id == matmul.image_id
    assert entry.labels["org.opencontainers.image.version"] == matmul.spec.version

    # other options are another tree's images: refused, naming what the engine has
    other = CliRunner().invoke(app, [*argv, "--build-arg", "PIP_INDEX_URL=http://mirror/simple"])
    assert other.exit_code == 4, other.output
    assert "that this tree builds" in other.stderr and matmul.spec.version in other.stderr
