"""A loss or gradient that turns NaN/inf stops training at once, naming the step, the term and the last
checkpoint; no checkpoint holds a non-finite weight; ``loss.nonfinite=skip_batch`` drops and counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import mmfuse
from mmfuse.fusion import FusionOutput, build_fusion
from mmfuse.objectives.nonfinite import first_nonfinite_grad, first_nonfinite_term
from tests.conftest import REPO, TINY, jsonl_overrides

STEPS_PER_EPOCH = 3  # the tiny data with the tiny config's batches


class PoisonAt(nn.Module):
    """``concat``, except that the ``at``-th training forward (0-based) returns NaN features."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.inner = build_fusion("concat", {"text": 32, "image": 32}, 32)
        self.at, self.calls = at, 0

    def forward(self, *args: Any, **kwargs: Any) -> FusionOutput:
        out = self.inner(*args, **kwargs)
        if self.training:
            self.calls += 1
            if self.calls - 1 == self.at:
                return out._replace(pooled=out.pooled * float("nan"))
        return out


def finite_checkpoints(run: Path) -> list[Path]:
    files = sorted((run / "checkpoints").glob("*.ckpt"))
    for f in files:
        state = torch.load(f, map_location="cpu", weights_only=True)["state_dict"]
        assert first_nonfinite_term({k: v for k, v in state.items() if k.startswith("model.")}) is None, f
    return files


def test_nan_loss_stops_at_once_naming_step_task_and_last_checkpoint(jsonl_data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, run) + ["trainer.logger=none", "trainer.max_epochs=4"])
    at = 2 * STEPS_PER_EPOCH  # the first step of the third epoch: two epochs' checkpoints exist
    with pytest.raises(mmfuse.Diverged) as err:
        mmfuse.train(cfg, fusion=PoisonAt(at))
    msg = str(err.value)
    assert f"at step {at} " in msg and "tasks.vqa loss = nan" in msg, msg
    files = finite_checkpoints(run)
    assert files and "last.ckpt" in msg  # the newest checkpoint written before the NaN
    assert 0 < torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] <= at
    assert not (run / "metrics.json").exists()  # a diverged run is not reported as a result


def test_overflowing_weight_is_named_and_cli_says_one_line(jsonl_data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "tools/train.py", "--config", str(TINY), *jsonl_overrides(jsonl_data, run),
                           "trainer.logger=none", "tasks.vqa.weight=1e39"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "diverged at step 0" in line and "weighted total loss = inf" in line, line
    assert not list((run / "checkpoints").glob("*.ckpt")) if (run / "checkpoints").exists() else True


def test_skip_batch_drops_the_update_and_counts_it(jsonl_data: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, run) + [
        "trainer.logger=none", "trainer.max_epochs=2", "loss.nonfinite=skip_batch"])
    result = mmfuse.train(cfg, fusion=PoisonAt(1))
    assert result["nonfinite_skipped_batches"] == 1
    assert json.loads((run / "metrics.json").read_text())["nonfinite_skipped_batches"] == 1
    finite_checkpoints(run)
    assert 0.0 <= result["test"]["test/acc"] <= 1.0


def test_first_nonfinite_grad_names_the_parameter() -> None:
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net(torch.ones(1, 2)).sum().backward()
    assert first_nonfinite_grad(net.named_parameters()) is None
    net[1].weight.grad[0, 1] = float("inf")
    assert first_nonfinite_grad(net.named_parameters()) == "1.weight"
    assert first_nonfinite_term({"a": torch.tensor(1.0), "b": torch.tensor(float("nan"))}) == "b = nan"
