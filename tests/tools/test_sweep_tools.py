"""Every sweep tool of tools/ runs end to end as a user types it, on tiny models and a handful of steps, so a
tool that stops working fails CI (the benchmark numbers themselves are the README's, not the tests')."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_video_dataset, run_tool

# The experiment configs' models, shrunk; a few batches of each split.
TINY_RUN = [
    "model.text.config.hidden_size=32", "model.text.config.intermediate_size=64",
    "model.text.config.num_attention_heads=2", "model.image.embed_dim=32", "model.image.depth=1",
    "model.image.num_heads=2", "model.fusion.dim=32", "data.limit_questions=64", "trainer.max_epochs=1",
    "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "trainer.logger=none",
]


def test_benchmark_multitask(tmp_path: Path) -> None:
    out = run_tool("tools/benchmark_multitask.py", "--epochs", "1", "--output", str(tmp_path),
                   "--only", "vqa only", "static", *TINY_RUN)
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [r["name"] for r in rows] == ["vqa only", "static"] and "| static |" in out
    assert rows[1]["test"]["itm"] is not None and rows[0]["test"]["itm"] is None


def test_benchmark_video(tmp_path: Path) -> None:
    data = make_video_dataset(tmp_path / "video")["train"].parent
    run_tool("tools/benchmark_video.py", "--data", str(data), "--output", str(tmp_path / "out"), "--seeds", "0",
             "--only", "mean", *TINY_RUN)
    rows = json.loads((tmp_path / "out" / "table.json").read_text())
    assert [(r["id"], r["seed"]) for r in rows] == [("mean", 0)] and 0 <= rows[0]["overall"] <= 100
    assert "| mean |" in (tmp_path / "out" / "table.md").read_text()


def test_benchmark_rl_trains_stage_one_then_a_row(tmp_path: Path) -> None:
    run_tool("tools/benchmark_rl.py", "--output", str(tmp_path), "--seeds", "0", "--only", "ppo", *TINY_RUN)
    rows = json.loads((tmp_path / "table.json").read_text())
    assert [(r["id"], r["seed"]) for r in rows] == [("ppo", 0)]
    assert (tmp_path / "stage1" / "metrics.json").is_file()


def test_benchmark_scorer(tmp_path: Path) -> None:
    out = run_tool("tools/benchmark_scorer.py", "--questions", "300", "--rounds", "1",
                   "--json", str(tmp_path / "s.json"))
    result = json.loads((tmp_path / "s.json").read_text())
    assert result["questions"] == 300 and "identical" in out.lower()
