"""tools/make_sort_of_clevr.py as a user runs it, and configs/experiments/sort_of_clevr.yaml training on its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mmfuse
from tests.conftest import REPO, TINY, run_tool

TOOL = "tools/make_sort_of_clevr.py"
CONFIG = REPO / "configs" / "experiments" / "sort_of_clevr.yaml"


def _fails(*args: str) -> str:
    """Run the tool expecting exit code 2 and a one-line error; that line."""
    proc = subprocess.run([sys.executable, TOOL, *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_cli_writes_the_dataset_and_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "soc"
    stdout = run_tool(TOOL, "--output", str(out), "--seed", "3", "--train", "2", "--val", "1", "--test", "1")
    assert f"train: 2 images in {out / 'images' / 'train'}, 40 questions in {out / 'train.jsonl'}" in stdout
    assert json.loads(stdout.strip().splitlines()[-1]) == {"output": str(out.resolve()), "seed": 3}
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["00000.png", "00001.png"]
    assert [len((out / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "val", "test")] == [40, 20, 20]
    scenes = [json.loads(x) for x in (out / "scenes_val.jsonl").read_text().splitlines()]
    assert [s["image"] for s in scenes] == ["images/val/00000.png"] and len(scenes[0]["objects"]) == 6
    assert json.loads((out / "summary.json").read_text())["seed"] == 3

    before = (out / "train.jsonl").read_bytes()
    line = _fails("--output", str(out), "--seed", "4", "--train", "2", "--val", "1", "--test", "1")
    assert line.startswith("data error: output directory") and "is not empty; pass --overwrite" in line
    assert (out / "train.jsonl").read_bytes() == before
    run_tool(TOOL, "--output", str(out), "--seed", "4", "--train", "1", "--val", "1", "--test", "1", "--overwrite")
    assert (out / "train.jsonl").read_bytes() != before and len(list((out / "images" / "train").iterdir())) == 1

    line = _fails("--output", str(tmp_path / "other"), "--train", "0")
    assert line.startswith("data error: Sort-of-CLEVR counts must give train, val and test each an integer >= 1")
    assert "196,000 / 20,000 / 20,000 questions" in run_tool(TOOL, "--help")


@pytest.mark.parametrize("config", [CONFIG, CONFIG.with_name("sort_of_clevr_sweep.yaml")], ids=["default", "sweep"])
def test_experiment_config_trains_on_the_generated_data(tmp_path: Path, config: Path) -> None:
    data = tmp_path / "soc"
    run_tool(TOOL, "--output", str(data), "--train", "20", "--val", "5", "--test", "5")
    # the experiment's own data keys (relative file names, no augmentation) and vision grid (80 px / 16 = 5x5
    # tokens, conv stem); TINY only shrinks widths and depths
    cfg = mmfuse.load_config([config, TINY], [f"data.root={data}", f"run_dir={tmp_path / 'run'}",
                                              "trainer.logger=none", "trainer.num_threads=1",
                                              "model.image.img_size=80", "model.image.patch_size=16"])
    assert (cfg.data.source, cfg.data.train, list(cfg.data.augment), cfg.model.image.stem) == \
        ("jsonl", "train.jsonl", [], "conv")
    result = mmfuse.train(cfg)
    assert result["num_questions"] == {"train": 400, "val": 100, "test": 100}
    acc = result["test_accuracy"]
    assert acc["perAnswerTypeCount"] == {"non-relational": 50, "relational": 50}
    assert set(acc["perQuestionType"]) == {"shape", "horizontal", "vertical", "closest", "furthest", "count"}
    answers = json.loads((tmp_path / "run" / "answers.json").read_text())
    words = answers["answers"]
    assert set(words) <= {"square", "circle", "left", "right", "top", "bottom", "1", "2", "3", "4", "5", "6"}
    assert {"square", "circle", "left", "right", "top", "bottom"} <= set(words)
