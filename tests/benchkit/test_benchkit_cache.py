"""The dataset cache: hashed folder names, idempotent builds, interrupt safety, prepare_main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchkit import cache, dataset_dir, is_prepared, materialise, prepare_main, require_dataset


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MBCTL_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def counting_generator(calls: list[Path]):
    def generate(root: Path) -> None:
        calls.append(root)
        (root / "payload.txt").write_text("data")

    return generate


SPEC = {"dataset": "Toy", "version": 1, "size": 3, "seed": 0}


def test_folder_is_named_by_dataset_and_spec_hash(data_root: Path) -> None:
    path = dataset_dir(SPEC)
    assert path.parent == data_root and path.name.startswith("Toy-")
    assert len(path.name) == len("Toy-") + 12
    assert dataset_dir(dict(reversed(list(SPEC.items())))) == path  # key order is irrelevant
    assert dataset_dir({**SPEC, "size": 4}) != path


def test_materialise_builds_once_then_reuses(data_root: Path) -> None:
    calls: list[Path] = []
    first = materialise(SPEC, counting_generator(calls))
    second = materialise(SPEC, counting_generator(calls))
    assert first == second == dataset_dir(SPEC)
    assert len(calls) == 1 and calls[0] != first  # generated into a temporary folder
    assert (first / "payload.txt").read_text() == "data"
    assert json.loads((first / cache.MARKER).read_text()) == SPEC
    # no temporary folder left; the lock file stays (removing it would race a waiting preparer)
    assert sorted(p.name for p in data_root.iterdir()) == [first.name, f"{first.name}.lock"]
    assert require_dataset(SPEC) == first and is_prepared(SPEC)


def test_changed_spec_builds_a_new_dataset() -> None:
    calls: list[Path] = []
    old = materialise(SPEC, counting_generator(calls))
    new = materialise({**SPEC, "version": 2}, counting_generator(calls))
    assert new != old and len(calls) == 2
    assert (old / cache.MARKER).is_file() and (new / cache.MARKER).is_file()


def test_interrupted_build_leaves_no_marker_and_is_redone(data_root: Path) -> None:
    def interrupted(root: Path) -> None:
        (root / "half.txt").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        materialise(SPEC, interrupted)
    assert not is_prepared(SPEC)
    assert not dataset_dir(SPEC).exists()
    with pytest.raises(FileNotFoundError, match="mbctl prepare"):
        require_dataset(SPEC)
    calls: list[Path] = []
    path = materialise(SPEC, counting_generator(calls))
    assert len(calls) == 1 and not (path / "half.txt").exists()
    assert sorted(p.name for p in data_root.iterdir()) == [path.name, f"{path.name}.lock"]


def test_folder_without_marker_is_rebuilt() -> None:
    # A folder holding data but no marker (say, copied by hand) is not trusted.
    dataset_dir(SPEC).mkdir(parents=True)
    (dataset_dir(SPEC) / "junk").write_text("x")
    calls: list[Path] = []
    path = materialise(SPEC, counting_generator(calls))
    assert len(calls) == 1 and not (path / "junk").exists() and is_prepared(SPEC)


def test_prepare_main_reads_only_the_dataset_options(capsys: pytest.CaptureFixture[str]) -> None:
    def add_arguments(parser) -> None:
        parser.add_argument("--size", type=int, default=1)

    def params(args) -> dict:
        return {"dataset": "Toy", "size": args.size, "seed": args.seed}

    calls: list[Path] = []
    argv = ["--batch-size", "8", "--size", "5", "--seed", "2", "--unknown"]
    path = prepare_main(
        argv,
        prog="toy-prepare",
        add_arguments=add_arguments,
        params=params,
        generate=lambda spec: counting_generator(calls),
    )
    assert path == dataset_dir({"dataset": "Toy", "size": 5, "seed": 2}) and len(calls) == 1
    assert capsys.readouterr().out == f"Toy ready in {path}\n"
    prepare_main(
        argv,
        prog="toy-prepare",
        add_arguments=add_arguments,
        params=params,
        generate=lambda spec: counting_generator(calls),
        label="toys",
    )
    assert len(calls) == 1 and capsys.readouterr().out == f"toys ready in {path}\n"
