"""tools/benchmark.py (the README's speed command) runs end to end on a tiny config and reports its ratio."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TINY, jsonl_overrides, run_tool


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


def test_fusion_benchmark_compares_variants_of_one_fusion(tmp_path: Path) -> None:
    """tools/benchmark_fusion.py (README "Speed"): the relation pair sum whole vs chunked, tiny sizes."""
    out = run_tool("tools/benchmark_fusion.py", "--fusion", "relation", "--variant", "pair_chunk=0",
                   "--variant", "pair_chunk=1,g_dim=16", "--batch", "4", "--tokens", "6", "--dim", "8",
                   "--fusion-dim", "8", "--rounds", "2", "--threads", "1", "--json", str(tmp_path / "f.json"))
    assert "pair_chunk=0" in out and "saved for backward" in out
    rows = json.loads((tmp_path / "f.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["pair_chunk=0", "pair_chunk=1,g_dim=16"]
    assert rows[0]["speedup_vs_first"] == 1.0 and rows[0]["max_out_diff"] == 0.0
    assert rows[1]["median_s"] > 0 and rows[1]["saved_mb"] > 0 and rows[1]["max_grad_rel_diff"] is None
    assert "n/a (other weight shapes)" in out
    # the same maths up to rounding: the gradients agree and the chunked path keeps less for the backward
    same = run_tool("tools/benchmark_fusion.py", "--fusion", "relation", "--variant", "pair_chunk=0",
                    "--variant", "pair_chunk=2", "--batch", "4", "--tokens", "6", "--dim", "8", "--fusion-dim", "8",
                    "--rounds", "1", "--json", str(tmp_path / "g.json"))
    assert "x1.00" in same
    whole, chunked = json.loads((tmp_path / "g.json").read_text())["rows"]
    assert chunked["max_grad_rel_diff"] < 1e-4 and chunked["saved_mb"] < whole["saved_mb"]


def test_fusion_benchmark_refuses_bad_input_in_one_line() -> None:
    for args, message in ((["--fusion", "nope", "--variant", "default"], "'nope' is not registered"),
                          (["--fusion", "relation", "--variant", "g_dim"], "expected key=value"),
                          (["--fusion", "relation", "--variant", "pair_chunk=-3"], "pair_chunk must be")):
        proc = subprocess.run([sys.executable, "tools/benchmark_fusion.py", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
