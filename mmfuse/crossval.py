"""K-fold cross-validation over the training split: ``cross_validate(cfg, k)``.

Folds are made *by image* (``sha1(image key)`` picks the fold), so no image is in two folds and
the assignment does not depend on seed, order or machine. Fold ``i`` trains exactly as
:func:`mmfuse.train` does (validation carved from the other folds by image, or the configured
validation split), then tests on fold ``i``. The summary is the mean and the sample standard
deviation (ddof=1) of the held-out official accuracies, overall and per answer type.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf
from torch import nn

from mmfuse.config import save_config
from mmfuse.data.schema import QARecord
from mmfuse.data.sources import load_records
from mmfuse.data.splits import carve_validation, split_hash
from mmfuse.errors import ConfigError
from mmfuse.runner import make_run_dir
from mmfuse.training import train
from mmfuse.utils import write_json


def fold_of(image_key: str, k: int) -> int:
    """The fold (0..k-1) of an image: ``split_hash(key) mod k`` (the first 8 bytes of its sha1)."""
    return split_hash(image_key) % k


def kfold(records: list[QARecord], k: int) -> list[list[QARecord]]:
    """``records`` split into ``k`` folds by image (order kept within a fold)."""
    folds: list[list[QARecord]] = [[] for _ in range(k)]
    for r in records:
        folds[fold_of(r.image_key, k)].append(r)
    return folds


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}


def cross_validate(cfg: DictConfig, k: int, fusion: nn.Module | None = None) -> dict[str, Any]:
    """Train and test ``k`` times; writes ``<run>/fold_<i>/`` and ``<run>/cv_metrics.json``."""
    if k < 2:
        raise ConfigError(f"--folds must be at least 2, got {k}")
    d = cfg.data
    full = load_records(d.source, "train", d.train, d.root)
    if d.limit_questions is not None:
        full = full[: d.limit_questions]
    folds = kfold(full, k)
    if empty := [i for i, f in enumerate(folds) if not f]:
        raise ValueError(f"{k}-fold cross-validation: fold(s) {empty} got no image; use fewer folds "
                         f"({len({r.image_key for r in full})} images in the training split)")
    explicit_val = load_records(d.source, "val", d.val, d.root) if d.val is not None else None
    base = make_run_dir(cfg)
    save_config(cfg, base / "config.yaml")
    results = []
    for i in range(k):
        rest = [r for j, f in enumerate(folds) if j != i for r in f]
        tr, va = (rest, explicit_val) if explicit_val is not None else carve_validation(rest, d.val_fraction)
        if not va or not tr:
            raise ValueError(f"fold {i}: carving data.val_fraction={d.val_fraction} of the other folds' images "
                             f"left {len(tr)} training and {len(va)} validation questions; change "
                             f"data.val_fraction, give data.val, or use fewer folds")
        fold_cfg = cast(DictConfig, OmegaConf.merge(cfg, {"run_dir": str(base / f"fold_{i}"), "resume": None}))
        results.append(train(fold_cfg, fusion, records={"train": tr, "val": va, "test": folds[i]}))
    accs = [r["test_accuracy"] for r in results]
    types = sorted({t for a in accs for t in a.get("perAnswerType", {})})
    summary = {
        "folds": k,
        "fold_by": "sha1(image key) mod k",
        "run_dir": str(base),
        "per_fold": [{"fold": i, "num_test": len(folds[i]), "overall": a["overall"], "run_dir": r["run_dir"],
                      "perAnswerType": a.get("perAnswerType", {})} for i, (a, r) in enumerate(zip(accs, results))],
        "overall": _mean_std([a["overall"] for a in accs]),
        "perAnswerType": {t: _mean_std([a["perAnswerType"][t] for a in accs if t in a.get("perAnswerType", {})])
                          for t in types},
    }
    write_json(Path(base) / "cv_metrics.json", summary)
    return summary
