"""Helpers shared by benchmark folders: precision names, DDP launch, text and image generators."""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import types
from pathlib import Path

import benchkit.text
import pytest
from benchkit import (
    PRECISIONS,
    Lexicon,
    ddp_main,
    fakeimagenet,
    init_distributed,
    photo_like,
    precision_settings,
    relaunch_under_torchrun,
    silence_other_ranks,
    write_jpegs,
)

BENCHKIT = Path(__file__).resolve().parents[2] / "benchmarks" / "benchkit"


def test_top_level_import_stays_standard_library() -> None:
    code = (
        "import sys, benchkit; heavy = {'torch', 'numpy', 'PIL', 'jax', 'tokenizers'};"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(BENCHKIT)},
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "device", "tf32", "amp"),
    [
        ("fp32", "cuda", False, None),
        ("tf32", "cuda", True, None),
        ("fp16", "cuda", False, "float16"),
        ("fp16", "cpu", False, "bfloat16"),
        ("bf16", "cuda", False, "bfloat16"),
        ("tf32-fp16", "cuda", True, "float16"),
        ("tf32-fp16", "cpu", True, "bfloat16"),
    ],
)
def test_precision_settings(name: str, device: str, tf32: bool, amp: str | None) -> None:
    torch = pytest.importorskip("torch")
    assert name in PRECISIONS
    got_tf32, got_amp = precision_settings(name, torch.device(device))
    assert got_tf32 is tf32
    assert got_amp is (None if amp is None else getattr(torch, amp))


def test_relaunch_is_a_no_op_for_one_device_or_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: execs.append(argv))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    relaunch_under_torchrun(1)
    monkeypatch.setenv("LOCAL_RANK", "0")
    relaunch_under_torchrun(4)
    assert execs == []


def test_relaunch_execs_torchrun_with_the_same_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    execs: list[list[str]] = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: execs.append(argv))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(sys, "argv", ["main.py", "--devices", "2", "--batch-size", "4"])
    relaunch_under_torchrun(2)
    assert execs == [
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            "main.py",
            "--devices",
            "2",
            "--batch-size",
            "4",
        ]
    ]


def test_init_distributed_without_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    device, world = init_distributed("cpu")
    assert device.type == "cpu" and world == 1


def test_only_rank_zero_keeps_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = sys.stdout
    monkeypatch.delenv("RANK", raising=False)
    assert silence_other_ranks() is True and sys.stdout is stdout
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(sys, "stdout", stdout)  # restored by monkeypatch afterwards
    assert silence_other_ranks() is False
    assert sys.stdout is not stdout and sys.stdout.name == os.devnull
    sys.stdout.close()


class Replaced(Exception):
    """What a mocked ``os.execv`` raises: the real one never returns."""


def ddp_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ddpbench")
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.1)
    return parser


def test_ddp_main_replaces_the_launcher_by_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    execs: list[list[str]] = []

    def execv(_exe: str, argv: list[str]) -> None:
        execs.append(argv)
        raise Replaced

    monkeypatch.setattr(os, "execv", execv)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(sys, "argv", ["main.py", "--devices", "2", "--lr", "3"])
    trained: list[argparse.Namespace] = []
    with pytest.raises(Replaced):
        ddp_main(trained.append, ddp_parser(), telemetry=None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    assert execs == [[*torchrun, *sys.argv]]
    assert trained == []


@pytest.mark.parametrize("rank", ["0", "1"])
def test_ddp_main_trains_in_a_worker_and_only_rank_zero_reports(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], rank: str
) -> None:
    monkeypatch.setattr(os, "execv", lambda *_: pytest.fail("a worker must not relaunch"))
    monkeypatch.setenv("LOCAL_RANK", rank)
    monkeypatch.setenv("RANK", rank)
    monkeypatch.delenv("MBCTL_VENDOR", raising=False)
    monkeypatch.setattr(sys, "argv", ["main.py", "--devices", "2", "--lr", "3"])
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # restored after silence_other_ranks
    trained: list[argparse.Namespace] = []
    ddp_main(trained.append, ddp_parser(), telemetry=None)
    assert trained == [argparse.Namespace(devices=2, lr=3.0)]
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    if rank == "0":
        assert [e["event"] for e in events] == ["start", "end"]
        assert events[0]["bench"] == "ddpbench"
        assert events[0]["argv"] == ["main.py", "--devices", "2", "--lr", "3"]
    else:
        assert events == []
        sys.stdout.close()


def test_train_tokenizer_on_trains_on_the_lines_then_removes_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, int, Path]] = []

    def train(texts: Path, vocab: int, out: Path) -> None:
        seen.append((texts.read_text(), vocab, out))
        if vocab == 0:
            raise ValueError("no vocabulary")

    monkeypatch.setattr(benchkit.text, "train_tokenizer", train)
    out = tmp_path / "tokenizer.json"
    benchkit.train_tokenizer_on((word for word in ["a b", "c"]), 64, out)
    assert seen == [("a b\nc", 64, out)]
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no vocabulary"):
        benchkit.train_tokenizer_on(["a"], 0, out)
    assert list(tmp_path.iterdir()) == []


def test_pretrained_tokenizer_names_the_trained_special_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # transformers lives in the benchmark venv only; the tiny catalogue runs load real ones.
    made: list[dict[str, object]] = []
    fake = types.ModuleType("transformers")
    fake.PreTrainedTokenizerFast = lambda **kw: made.append(kw) or "tokenizer"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "transformers", fake)
    path = tmp_path / "tokenizer.json"
    assert benchkit.pretrained_tokenizer(path, padding_side="left") == "tokenizer"
    unk, bos, eos = benchkit.SPECIAL_TOKENS
    assert made == [
        {
            "tokenizer_file": str(path),
            "bos_token": bos,
            "eos_token": eos,
            "unk_token": unk,
            "padding_side": "left",
        }
    ]
    assert (unk, bos, eos) == ("<unk>", "<s>", "</s>")


def test_lexicon_is_deterministic_and_zipfian() -> None:
    a, b = Lexicon(200, random.Random(1)), Lexicon(200, random.Random(1))
    assert a.words == b.words and len(set(a.words)) == 200
    sample = a.sample(5000)
    assert sample == b.sample(5000)
    assert sample.count(a.words[0]) > sample.count(a.words[-1])  # frequent words come first


def test_photo_like_jpegs(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("PIL")
    image = photo_like(np.random.default_rng(0), 16)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    write_jpegs(tmp_path, 5, 16, seed=3, chunk=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{i:06d}.jpg" for i in range(5)]


def test_fakeimagenet_layout(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("PIL")
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=0)
    fakeimagenet.add_arguments(parser)
    spec = fakeimagenet.params(parser.parse_args(["--images", "6", "--classes", "3"]))
    assert spec["dataset"] == "FakeImageNet" and spec["images"] == 6
    fakeimagenet.generate(spec)(tmp_path)
    classes = sorted(p.name for p in (tmp_path / "train").iterdir())
    assert classes == ["n00000000", "n00000001", "n00000002"]
    assert len(list((tmp_path / "train").glob("*/*.JPEG"))) == 6
