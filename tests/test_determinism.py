"""Same config, same seed, two separate processes: byte-identical tokenizer and vocabularies, identical
weights and identical metrics (everything but times and paths)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tests.conftest import TINY, jsonl_overrides, make_jsonl_dataset, run_tool

VOLATILE = {"run_dir", "best_checkpoint", "wall_seconds", "fit_seconds", "train_samples_per_s",
            "seconds_to_first_step", "checkpoint", "output"}


def stable(metrics: Any) -> Any:
    """``metrics`` without times and paths."""
    if isinstance(metrics, dict):
        return {k: stable(v) for k, v in metrics.items() if k not in VOLATILE}
    if isinstance(metrics, list):
        return [stable(v) for v in metrics]
    return metrics


def test_two_processes_one_seed_give_the_same_run(tmp_path: Path) -> None:
    data = make_jsonl_dataset(tmp_path / "data", n_images=12)
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:  # each in its own process: nothing shared but the files
        run_tool("tools/train.py", "--config", str(TINY), *jsonl_overrides(data, run), "trainer.logger=none",
                 "trainer.max_epochs=2", "model.fusion.hparams.dropout=0.1", "data.augment=[hflip]")
    a, b = runs
    for rel in ("answers.json", *[str(p.relative_to(a)) for p in sorted((a / "tokenizer").rglob("*")) if p.is_file()]):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in runs)
    assert stable(ma) == stable(mb)
    assert (a / "eval_test" / "predictions.json").read_text() == (b / "eval_test" / "predictions.json").read_text()
    wa, wb = (torch.load(r / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
              for r in runs)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
