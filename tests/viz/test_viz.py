"""mmfuse.viz: every figure writes a PNG PIL can open; log reading (CSV, TensorBoard); HTML index; confusion counts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmfuse.viz import (
    confusion_counts,
    plot_attention_grid,
    plot_confusion,
    plot_learning_curves,
    plot_type_accuracy,
    read_lightning_logs,
    top_labels,
    write_index_html,
)
from mmfuse.viz.figures import _loss_lines

# A CSVLogger metrics.csv as Lightning writes it: one row per log_metrics call, most cells empty.
METRICS_CSV = """epoch,lr-AdamW,step,train/acc,train/loss_epoch,train/loss_step,val/acc,val/acc/yes/no,val/loss
0,,9,,,2.0,,,
0,,19,,,,0.5,0.4,1.5
0,,19,0.45,1.8,,,,
,0.0003,19,,,,,,
1,,29,,,1.2,,,
1,,39,,,,0.75,0.7,1.0
1,,39,0.7,1.1,,,,
"""

SERIES = {
    "train/loss_step": [(i, 2.0 / (i + 1)) for i in range(0, 40, 5)],
    "train/loss_epoch": [(19, 1.8), (39, 1.1)],
    "val/loss": [(19, 1.5), (39, 1.0)],
    "train/acc": [(19, 0.45), (39, 0.7)],
    "val/acc": [(19, 0.5), (39, 0.75)],
    "val/acc/yes/no": [(19, 0.4), (39, 0.7)],
}


def _png(path: Path, min_w: int = 300, min_h: int = 200) -> tuple[int, int]:
    """Assert ``path`` is a non-empty PNG of sensible size; return its size."""
    assert path.is_file() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        w, h = im.size
    assert min_w <= w <= 4000 and min_h <= h <= 4000, (w, h)
    return w, h


def test_plot_type_accuracy(tmp_path: Path) -> None:
    groups = {"overall": 91.2, "yes/no": 88.7, "color": 97.0}
    out = plot_type_accuracy(groups, tmp_path / "types.png", "Accuracy by answer type",
                             ci={"overall": (90.1, 92.3), "yes/no": (86.0, 91.0)}, counts={"overall": 300, "color": 90})
    assert out == tmp_path / "types.png"
    _png(out)
    _png(plot_type_accuracy({"overall": 100.0}, tmp_path / "one.png", "x" * 200), min_h=100)


def test_plot_learning_curves_and_empty(tmp_path: Path) -> None:
    _png(plot_learning_curves(SERIES, tmp_path / "curves.png", "run"), min_w=1000)
    _png(plot_learning_curves({"train/loss": [(0, 1.0), (1, 0.5)]}, tmp_path / "loss_only.png", "run"))
    _png(plot_learning_curves({}, tmp_path / "empty.png", "nothing"))  # placeholder, not an error


def test_loss_lines_prefer_epoch_level_and_keep_step_faint() -> None:
    assert _loss_lines(SERIES) == [("train/loss_step", True), ("train/loss_epoch", False), ("val/loss", False)]
    assert _loss_lines({"train/loss_step": [(0, 1.0)]}) == [("train/loss_step", False)]
    assert _loss_lines({"val/acc": [(0, 1.0)], "train/loss": []}) == []


def test_confusion_counts_exact() -> None:
    gold = ["yes", "yes", "yes", "no", "no", "red", "blue"]
    pred = ["yes", "no", "maybe", "no", "yes", "red", "red"]
    m = confusion_counts(gold, pred, ["yes", "no", "red"])  # "blue" gold is outside the labels: skipped
    np.testing.assert_array_equal(m, [[1, 1, 0, 1],   # yes -> yes, no, other(maybe)
                                      [1, 1, 0, 0],   # no  -> yes, no
                                      [0, 0, 1, 0]])  # red -> red
    assert m.dtype.kind == "i"
    assert top_labels(gold, 2) == ["yes", "no"]
    assert top_labels(["b", "a", "c", "c"], 3) == ["c", "a", "b"]  # ties alphabetical
    with pytest.raises(ValueError):
        confusion_counts(["a"], [], ["a"])


def test_plot_confusion(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    answers = [f"answer {i}" for i in range(14)]
    gold = list(rng.choice(answers, 300))
    pred = [g if rng.random() < 0.7 else str(rng.choice(answers + ["unseen"])) for g in gold]
    _png(plot_confusion(gold, pred, tmp_path / "conf.png", top_k=10, title="Confusion"), min_w=500, min_h=500)


def _sample(i: int, correct: bool | None = None) -> dict:
    img = np.full((64, 64, 3), 230, np.uint8)
    img[20:44, 16 + i:40 + i] = (200, 30, 30)
    att = np.zeros((8, 8), np.float32)
    att[3, 3 + i % 4] = 1.0
    s = {"image": img, "attention": att, "question": "What colour is the shape in this rather long question?",
         "prediction": "red", "answer": "red" if i % 2 else "blue"}
    if correct is not None:
        s["correct"] = correct
    return s


def test_plot_attention_grid(tmp_path: Path) -> None:
    samples = [_sample(i) for i in range(12)]
    w, h = _png(plot_attention_grid(samples, tmp_path / "att.png", cols=4), min_w=1000, min_h=1000)
    assert w > h  # 3 rows x 4 cols
    _png(plot_attention_grid([_sample(0, correct=True)], tmp_path / "one.png"), min_w=200)
    with pytest.raises(ValueError):
        plot_attention_grid([{**_sample(0), "attention": np.zeros(8)}], tmp_path / "bad.png")


def test_read_lightning_logs_csv(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "metrics.csv").write_text(METRICS_CSV)
    series = read_lightning_logs(tmp_path)
    assert series["train/loss_step"] == [(9, 2.0), (29, 1.2)]
    assert series["val/acc"] == [(19, 0.5), (39, 0.75)]
    assert series["val/acc/yes/no"] == [(19, 0.4), (39, 0.7)]
    assert series["lr-AdamW"] == [(19, 0.0003)]
    assert series["epoch"] == [(9, 0.0), (19, 0.0), (29, 1.0), (39, 1.0)]
    assert "step" not in series


def test_read_lightning_logs_missing_is_empty(tmp_path: Path) -> None:
    assert read_lightning_logs(tmp_path) == {}
    assert read_lightning_logs(tmp_path / "does-not-exist") == {}


def test_read_lightning_logs_tensorboard_round_trip(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path / "tensorboard")) as writer:
        for step, (loss, acc) in enumerate([(2.0, 0.25), (1.0, 0.5), (0.5, 0.75)]):
            writer.add_scalar("val/loss", loss, step * 10)
            writer.add_scalar("val/acc", acc, step * 10)
    series = read_lightning_logs(tmp_path)
    assert series["val/loss"] == [(0, 2.0), (10, 1.0), (20, 0.5)]
    assert series["val/acc"] == [(0, 0.25), (10, 0.5), (20, 0.75)]


def test_write_index_html_escapes_and_links(tmp_path: Path) -> None:
    figures = [("Accuracy <b>by type</b>", "types.png", "caption with <script>alert(1)</script>"),
               ("Attention", "figs/attention grid.png", "Q: is it <script>?")]
    path = write_index_html(tmp_path, "Report <script>x</script>",
                            {"question": "<script>alert('x')</script>", "acc": 91.23456, "n": 12}, figures)
    assert path == tmp_path / "index.html"
    page = path.read_text()
    assert "<script" not in page.lower() and "&lt;script&gt;" in page
    assert re.findall(r'<img src="([^"]+)"', page) == ["types.png", "figs/attention%20grid.png"]
    assert "91.23" in page and "<table" in page and "http" not in page
    assert page.index("<table") < page.index("<figure")
    with pytest.raises(ValueError):
        write_index_html(tmp_path, "t", {}, [("x", "https://example.com/a.png", "c")])
