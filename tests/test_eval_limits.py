"""Limits that cut evaluation short score the questions actually evaluated, say so, and never crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY, jsonl_overrides, make_jsonl_dataset, run_tool


@pytest.mark.parametrize("limit", ["trainer.limit_test_batches=1", "data.limit_questions=5"])
def test_limited_evaluation_reports_what_was_evaluated(tmp_path: Path, limit: str) -> None:
    data = make_jsonl_dataset(tmp_path / "data", n_images=12)
    run = tmp_path / "run"
    out = run_tool("tools/train.py", "--config", str(TINY), *jsonl_overrides(data, run), "trainer.logger=none",
                   "trainer.max_epochs=1", "data.eval_batch_size=4", limit)
    metrics = json.loads((run / "eval_test" / "metrics.json").read_text())
    key, value = limit.split("=")
    assert metrics["evaluation_limited_by"] == {key: int(value)}
    in_split = sum(1 for _ in data["test"].open())
    assert metrics["num_questions_in_split"] == in_split
    assert 0 < metrics["num_questions"] < in_split
    preds = json.loads((run / "eval_test" / "predictions.json").read_text())
    assert len(preds) == metrics["num_questions"] == metrics["accuracy"]["num_scored"]
    assert f"evaluated {metrics['num_questions']} of {in_split} questions of the split ({limit})" in out

