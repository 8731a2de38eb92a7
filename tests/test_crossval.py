"""K-fold cross-validation: folds by image, every question held out once, mean ± std reported."""

import json
import statistics
import sys
from pathlib import Path

import pytest

from mmfuse.config import ConfigError, load_config
from mmfuse.crossval import cross_validate, fold_of, kfold
from mmfuse.data.schema import QARecord
from mmfuse.data.splits import carve_validation, split_hash
from tests.conftest import REPO, TINY, jsonl_overrides

sys.path.insert(0, str(REPO / "tools"))
import train as train_tool


def test_kfold_is_by_image_and_a_partition() -> None:
    recs = [QARecord(i, f"img{i // 3}.png", "q") for i in range(300)]
    folds = kfold(recs, 4)
    assert sorted(r.question_id for f in folds for r in f) == list(range(300))
    images = [{r.image_key for r in f} for f in folds]
    assert all(not (images[i] & images[j]) for i in range(4) for j in range(i + 1, 4))
    assert all(15 <= len(f) // 3 <= 35 for f in folds)  # ~25 images each
    assert kfold(list(reversed(recs)), 4)[0] == list(reversed(folds[0]))  # independent of order


def test_folds_and_validation_share_one_split_key() -> None:
    """sha1's first 8 bytes, big-endian: the fold is that mod k, validation is that / 2**64 < fraction."""
    assert split_hash("img0.png") == int("8ac565a8c5cb1d9c", 16)  # hashlib.sha1(b"img0.png").hexdigest()[:16]
    keys = [f"img{i}.png" for i in range(50)]
    assert [fold_of(k, 7) for k in keys] == [split_hash(k) % 7 for k in keys]
    recs = [QARecord(i, k, "q") for i, k in enumerate(keys)]
    _, val = carve_validation(recs, 0.3)
    assert [r.image for r in val] == [k for k in keys if split_hash(k) / 2**64 < 0.3]


def test_cross_validation_end_to_end(jsonl_data: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    over = jsonl_overrides(jsonl_data, tmp_path / "cv") + ["trainer.logger=none"]
    assert train_tool.main(["--config", str(TINY), "--folds", "2", *over]) == 0
    out = capsys.readouterr().out
    assert "2-fold cross-validation" in out and "mean ± std" in out
    cv = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    per_fold = [f["overall"] for f in cv["per_fold"]]
    assert cv["overall"]["mean"] == round(statistics.fmean(per_fold), 2)
    assert cv["overall"]["std"] == round(statistics.stdev(per_fold), 2)
    assert sum(f["num_test"] for f in cv["per_fold"]) == 48  # every training question held out exactly once
    for i in range(2):
        fold = json.loads((tmp_path / "cv" / f"fold_{i}" / "metrics.json").read_text())
        assert fold["num_questions"]["test"] == cv["per_fold"][i]["num_test"]
        assert fold["test_leakage"]["shared_question_ids"] == 0  # (identical drawn images do share content)


def test_too_many_folds_or_too_few(jsonl_data: dict, tmp_path: Path) -> None:
    cfg = load_config(TINY, jsonl_overrides(jsonl_data, tmp_path / "cv"))
    with pytest.raises(ConfigError, match="at least 2"):
        cross_validate(cfg, 1)
    with pytest.raises(ValueError, match="got no image"):
        cross_validate(cfg, 40)
