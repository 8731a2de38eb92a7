"""tools/benchmark.py (the README's speed command) runs end to end on a tiny config and reports its ratio."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TINY, jsonl_overrides, run_tool


def test_benchmark_runs_both_loops_and_writes_its_numbers(jsonl_data: dict, tmp_path: Path) -> None:
    out = run_tool("tools/benchmark.py", "--config", "configs/experiments/easy_vqa.yaml", "--config", str(TINY),
                   "--steps", "2", "--rounds", "1", "--json", str(tmp_path / "bench.json"),
                   *jsonl_overrides(jsonl_data, tmp_path / "run"), "trainer.enable_progress_bar=false")
    assert "median training samples/s: lightning" in out
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["steps_per_round"] == 2 and result["rounds"] == 1
    assert len(result["lightning_samples_per_s"]) == len(result["plain_samples_per_s"]) == 1
    assert result["questions_per_round"] > 0 and result["ratio"] > 0
    assert result["ratio"] == result["median_lightning"] / result["median_plain"]


def test_gpu_benchmark_counts_flops_and_reports_mfu_on_a_cpu(tmp_path: Path) -> None:
    out = run_tool("tools/benchmark_gpu.py", "--config", str(TINY), "--cpu", "--batch-size", "8", "--steps", "2",
                   "--warmup", "1", "--answers", "10", "--peak-tflops", "0.5", "--json", str(tmp_path / "gpu.json"))
    assert "samples/s" in out and "MFU" in out
    r = json.loads((tmp_path / "gpu.json").read_text())
    assert r["images_per_step"] == 2 and r["precision"] == "fp32" and r["peak_memory_gib"] is None
    assert r["tflops_per_step"] > 0 and r["samples_per_s"] == 8 / r["step_seconds_median"]
    assert r["mfu"] == r["achieved_tflops"] / 0.5
    # the FLOP count grows with the batch: twice the questions and images, about twice the FLOPs
    run_tool("tools/benchmark_gpu.py", "--config", str(TINY), "--cpu", "--batch-size", "16", "--steps", "1",
             "--warmup", "0", "--answers", "10", "--json", str(tmp_path / "gpu16.json"))
    r16 = json.loads((tmp_path / "gpu16.json").read_text())
    assert 1.8 < r16["tflops_per_step"] / r["tflops_per_step"] < 2.2 and r16["mfu"] is None
