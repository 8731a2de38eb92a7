"""Distributed training verified with 2 CPU processes (gloo, Lightning's DDP launcher), as a user runs it:
``tools/train.py ... trainer.devices=2 trainer.strategy=ddp``. For the in-memory and the streamed path:
every training question is seen once an epoch across the processes (repeats only as documented padding),
evaluation on 2 processes equals evaluation on 1, a DDP checkpoint evaluates in one process, and only the
first process reports and writes the run directory."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import mmfuse
from mmfuse.config import load_config
from tests.conftest import TINY, jsonl_overrides, make_jsonl_dataset, run_tool

DDP = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp", "trainer.enable_progress_bar=false"]


def audit(run: Path, epoch: int) -> list[dict]:
    """Each process's audit of ``epoch``: its training question ids, and those of its padding batches."""
    return [json.loads((run / "audit" / f"rank{r}_epoch{epoch}.json").read_text()) for r in (0, 1)]


def evaluate_both_ways(tmp: Path, ckpt: str, *overrides: str) -> list[dict]:
    """tools/evaluate.py on 1 process, then on 2: the metrics, per-question rows and predictions of each."""
    out = []
    for name, extra in (("one", ["trainer.devices=1"]), ("two", DDP)):
        printed = run_tool("tools/evaluate.py", "--checkpoint", ckpt, "--output", str(tmp / name), *overrides, *extra)
        assert printed.count("95% interval") == 1  # one process prints the table
        metrics = json.loads((tmp / name / "metrics.json").read_text())
        out.append({"accuracy": metrics["accuracy"], "num_questions": metrics["num_questions"],
                    "world_size": metrics["world_size"],
                    "rows": sorted((tmp / name / "per_question.jsonl").read_text().splitlines()),
                    "predictions": sorted(json.loads((tmp / name / "predictions.json").read_text()),
                                          key=lambda p: str(p["question_id"]))})
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ddp")
    return {"root": root, "files": make_jsonl_dataset(root / "data", n_images=13)}  # 52 training questions


def test_ddp_in_memory_path(data: dict, tmp_path: Path) -> None:
    files = data["files"]
    # no run_dir: the processes must agree on the timestamped one themselves
    base = ["data.source=jsonl", f"data.root={files['train'].parent}", f"data.train={files['train']}",
            f"data.val={files['val']}", f"data.test={files['test']}"]
    out = run_tool("tools/train.py", "--config", str(TINY), *base, f"output_dir={tmp_path / 'runs'}",
                   "trainer.max_epochs=2", "data.batch_size=8", "trainer.audit_batches=true", *DDP)
    assert out.count("test split (official VQA accuracy)") == 1  # only the first process reports
    (run,) = list((tmp_path / "runs" / "tiny").iterdir())  # one run directory for both processes
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["num_questions"]["test"] == 12
    train_ids = [json.loads(x)["question_id"] for x in files["train"].read_text().splitlines()]
    for epoch in (0, 1):
        counts = Counter(q for part in audit(run, epoch) for q in part["question_ids"])
        assert set(counts) == set(train_ids)  # none dropped
        # 7 batches of 2 images (8 questions) for 2 processes: Lightning's sampler repeats the first batch
        # so each takes 4 steps; that batch's 8 questions are the only ones seen twice
        assert sum(counts.values()) == 52 + 8 and sorted(set(counts.values())) == [1, 2]
    one, two = evaluate_both_ways(tmp_path, metrics["best_checkpoint"])
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for key in ("accuracy", "rows", "predictions"):
        assert one[key] == two[key], key
    assert one["num_questions"] == two["num_questions"] == len(one["predictions"]) == 12


def test_ddp_streamed_path(data: dict, tmp_path: Path) -> None:
    files = data["files"]
    meta = mmfuse.prepare_data(load_config(TINY, jsonl_overrides(files, tmp_path / "x")), tmp_path / "prepared",
                               num_workers=1)
    stream = ["data.source=prepared", f"data.root={tmp_path / 'prepared'}"]
    out = run_tool("tools/train.py", "--config", str(TINY), *stream, f"run_dir={tmp_path / 'run'}",
                   "trainer.max_epochs=2", "data.batch_size=8", "trainer.audit_batches=true", *DDP)
    assert out.count("test split (official VQA accuracy)") == 1
    train_ids = [json.loads(x)["question_id"] for x in (tmp_path / "prepared" / "train.jsonl").read_text().splitlines()]
    assert len(train_ids) == meta["splits"]["train"]["questions"] == 52
    for epoch in (0, 1):
        parts = audit(tmp_path / "run", epoch)
        seen = [q for part in parts for q in part["question_ids"]]
        assert sorted(seen) == sorted(train_ids)  # LitData: every image once across the processes
        # the process with fewer batches repeats its first ones, marked as padding: both take as many steps
        assert parts[0]["batches"] == parts[1]["batches"]
        assert {q for p in parts for q in p["padding_ids"]} <= set(train_ids)
        assert min(p["padding_batches"] for p in parts) == 0  # only the shorter process pads
    ckpt = json.loads((tmp_path / "run" / "metrics.json").read_text())["best_checkpoint"]
    one, two = evaluate_both_ways(tmp_path, ckpt, *stream)
    for key in ("accuracy", "rows", "predictions"):
        assert one[key] == two[key], key
    assert len(one["predictions"]) == meta["splits"]["test"]["questions"]
