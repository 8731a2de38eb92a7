"""``evaluate --report`` on a tiny trained run writes every figure and an index linking them."""

import json
from pathlib import Path

from PIL import Image

import mmfuse
from mmfuse.evaluation.report import pick_samples
from tests.conftest import TINY, jsonl_overrides


def test_report_writes_every_figure(jsonl_data: dict, tmp_path: Path) -> None:
    cfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") + ["trainer.logger=csv",
                                                                                     "trainer.max_epochs=2"])
    run = mmfuse.train(cfg)
    assert run["test_accuracy"]["perQuestionType"].keys() == {"is there a", "what color", "what shape"}
    ecfg = mmfuse.load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "run") + [
        f"eval.checkpoint={run['best_checkpoint']}", "eval.report=true", "eval.report_samples=5"])
    result = mmfuse.evaluate(ecfg)
    report = Path(result["report"])
    html = report.read_text()
    for name in ("answer_types", "question_types", "learning_curves", "confusion", "attention"):
        png = report.parent / f"{name}.png"
        with Image.open(png) as im:
            assert im.size[0] > 300 and im.size[1] > 200, name
        assert f'src="{name}.png"' in html, name
    assert "VQA accuracy" in html and "leakage" in html
    metrics = json.loads((report.parent.parent / "metrics.json").read_text())
    assert metrics["accuracy"]["overall"] == result["accuracy"]["overall"]


def test_pick_samples_is_seeded_and_mixes_errors() -> None:
    rows = [{"question_id": i, "score": 1.0 if i % 4 else 0.0} for i in range(40)]
    a, b = pick_samples(rows, 12, 0), pick_samples(rows, 12, 0)
    assert a == b and len(a) == 12 and sum(r["score"] < 1 for r in a) == 4
    assert pick_samples(rows, 12, 1) != a
    assert len(pick_samples(rows[:3], 12, 0)) == 3 and pick_samples([], 5, 0) == []
