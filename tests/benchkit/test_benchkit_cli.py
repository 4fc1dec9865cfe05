"""Common benchmark options and the dataset cache directory."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchkit import arg_parser, data_dir


def test_common_options_and_their_defaults() -> None:
    args = arg_parser("convnet").parse_args([])
    assert vars(args) == {
        "batch_size": 32,
        "warmup": 3,
        "measures": 20,
        "every": 10,
        "device": "auto",
        "seed": 0,
    }


def test_benchmark_defaults_and_own_options() -> None:
    parser = arg_parser("matmul", "doc", batch_size=1, measures=25, every=20)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(["--size", "64", "--device", "cuda:1", "--warmup", "0"])
    assert parser.prog == "matmul"
    assert (args.size, args.device, args.warmup, args.batch_size, args.measures, args.every) == (
        64,
        "cuda:1",
        0,
        1,
        25,
        20,
    )


def test_data_dir_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MBCTL_DATA", str(tmp_path / "cache"))
    assert data_dir() == tmp_path / "cache"
    assert (tmp_path / "cache").is_dir()


def test_data_dir_defaults_to_dot_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MBCTL_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_dir() == Path(".data")
    assert (tmp_path / ".data").is_dir()
