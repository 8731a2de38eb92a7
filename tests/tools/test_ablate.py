"""tools/ablate.py as a user runs it: a 2x2 grid (two fusions x two seeds) of tiny easy-VQA runs, its table
files (with the robustness columns of --corrupt), then again with one cell's folder deleted: only that cell trains
and is evaluated under the corruption again."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, run_tool
from tests.tools.test_sweep_tools import TINY_RUN


def test_ablate_grid_table_and_resume(tmp_path: Path) -> None:
    args = ["tools/ablate.py", "--config", "configs/experiments/easy_vqa.yaml", "--grid",
            "model.fusion.name=concat,weighted_sum", "--seeds", "0", "1", "--baseline", "concat",
            "--output", str(tmp_path), "--resamples", "100", "--corrupt", "image:occlusion", "--levels", "0,1",
            *TINY_RUN]
    out = run_tool(*args)
    assert out.count("$ python tools/train.py") == 4 and out.count("$ python tools/evaluate.py") == 4
    summaries = json.loads((tmp_path / "ablation.json").read_text())
    assert [s["label"] for s in summaries] == ["model.fusion.name=concat", "model.fusion.name=weighted_sum"]
    for s in summaries:
        assert s["seeds"] == [0, 1] and s["parameters"] > 0 and s["samples_per_s"] > 0
        assert s["overall"]["min"] <= s["overall"]["mean"] <= s["overall"]["max"]
    assert summaries[0]["vs_baseline"] is None and summaries[1]["vs_baseline"]["questions"] > 0
    for s in summaries:  # the seeds' curves, their areas; the baseline's effective robustness is 0 by definition
        r = s["robustness"]["image:occlusion"]
        assert r["levels"] == [0.0, 1.0] and r["relative"]["mean"] == pytest.approx(sum(r["accuracy"]["mean"]) / 2)
    assert summaries[0]["robustness"]["image:occlusion"]["effective"]["mean"] == pytest.approx(0.0, abs=1e-9)
    table = (tmp_path / "ablation.md").read_text()
    assert "| model.fusion.name=concat | 0,1 |" in table and "baseline" in table and "| ER image:occlusion |" in table
    with open(tmp_path / "ablation.csv") as f:
        assert [r["row"] for r in csv.DictReader(f)] == [s["label"] for s in summaries]
    assert (tmp_path / "ablation.png").stat().st_size > 0 and (tmp_path / "ablation_robustness.png").is_file()
    before = (tmp_path / "fusion-concat" / "seed0" / "metrics.json").stat().st_mtime_ns

    shutil.rmtree(tmp_path / "fusion-weighted_sum" / "seed1")
    again = run_tool(*args)
    assert again.count("$ python tools/train.py") == 1 and "fusion-weighted_sum/seed1" in again
    assert again.count("done, read back") == 3 and again.count("robustness read back") == 3
    assert again.count("$ python tools/evaluate.py") == 1
    assert (tmp_path / "fusion-concat" / "seed0" / "metrics.json").stat().st_mtime_ns == before


def test_ablate_continues_a_cell_stopped_part_way_from_its_last_checkpoint(tmp_path: Path) -> None:
    args = ["tools/ablate.py", "--config", "configs/experiments/easy_vqa.yaml", "--grid", "model.fusion.name=concat",
            "--seeds", "0", "--output", str(tmp_path), "--resamples", "20", *TINY_RUN]
    first = run_tool(*args)
    cell = tmp_path / "fusion-concat" / "seed0"
    assert "resume=" not in first and (cell / "checkpoints" / "last.ckpt").is_file()
    started = json.loads((cell / "ablate_started.json").read_text())
    assert started == json.loads((cell / "ablate_cell.json").read_text())  # the command, without resume=
    (cell / "metrics.json").unlink()  # as if killed after an epoch: started, a last.ckpt, never finished
    (cell / "ablate_cell.json").unlink()
    again = run_tool(*args)
    assert again.count("$ python tools/train.py") == 1 and f"resume={cell / 'checkpoints' / 'last.ckpt'}" in again
    assert (cell / "metrics.json").is_file()
    assert json.loads((cell / "ablate_cell.json").read_text()) == started  # finished: read back next time
    assert "done, read back" in run_tool(*args)


def test_ablate_refuses_a_bad_grid_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "tools/ablate.py", "--config", "configs/experiments/easy_vqa.yaml",
                           "--grid", "model.fusion.name=concat", "--baseline", "film", "--output", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--baseline 'film' is not a row of the grid; rows: model.fusion.name=concat" in proc.stderr


def test_ablate_checks_every_cell_config_before_training(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "tools/ablate.py", "--config", "configs/experiments/easy_vqa.yaml",
                           "--grid", "model.fusion.name=concat,no_such_fusion", "--output", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "no_such_fusion" in proc.stderr and "concat" in proc.stderr
    assert "$ python" not in proc.stdout and not any(tmp_path.iterdir())


def test_ablate_extra_rows_and_parallel_jobs(tmp_path: Path) -> None:
    # a fusion row plus a question-only row (--row), two cells trained at once (--jobs 2)
    out = run_tool("tools/ablate.py", "--config", "configs/experiments/easy_vqa.yaml", "--grid",
                   "model.fusion.name=concat", "--seeds", "0", "--jobs", "2", "--output", str(tmp_path),
                   "--resamples", "20", "--row", "model.modalities=[text]", *TINY_RUN, "trainer.num_threads=1")
    assert out.count("$ python tools/train.py") == 2
    # the overrides after --row are every cell's, not the row's
    assert out.count("trainer.num_threads=1") == 2
    summaries = json.loads((tmp_path / "ablation.json").read_text())
    assert [s["label"] for s in summaries] == ["model.fusion.name=concat", "model.modalities=[text]"]
    text_only = json.loads((tmp_path / "modalities-_text_" / "seed0" / "metrics.json").read_text())
    both = json.loads((tmp_path / "fusion-concat" / "seed0" / "metrics.json").read_text())
    assert text_only["parameters"]["total"] < both["parameters"]["total"]  # no image encoder built
    assert summaries[1]["vs_baseline"]["questions"] > 0


@pytest.mark.parametrize("extra, message", [
    (["--row", "model.fusion.name=concat"], "a --row repeats a row"),
    (["--row", "model.modalities"], "expected KEY=VALUE"),
    (["--row", "model.modalities=[text"], "--row 'model.modalities=[text': unbalanced brackets"),
    (["--row", "optim.lr=1e-4,optim.lr=1e-3"], "'optim.lr' given twice"),
    (["--jobs", "0"], "--jobs 0: expected an integer >= 1"),
])
def test_ablate_refuses_bad_rows_and_jobs(tmp_path: Path, extra: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "tools/ablate.py", "--config", "configs/experiments/easy_vqa.yaml",
                           "--grid", "model.fusion.name=concat", *extra, "--output", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
