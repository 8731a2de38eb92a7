"""The evaluation directory of a split, shared by ``train(cfg)``'s test stage and ``evaluate(cfg)``:
predictions scored the official way, bootstrap intervals, the leakage check, ``metrics.json``."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from mmfuse.config import save_config, to_container
from mmfuse.data.schema import QARecord
from mmfuse.errors import DataError
from mmfuse.evaluation.leakage import check_leakage, warn_leakage
from mmfuse.evaluation.results import config_hash, score_predictions, summarize, write_rows
from mmfuse.utils import write_json

log = logging.getLogger(__name__)
__all__ = ["evaluated_line", "evaluation_limits", "finish_datasets", "finish_evaluation", "training_targets"]


def finish_evaluation(out_dir: Path, records: Sequence[QARecord], predictions: Sequence[Mapping[str, Any]],
                      cfg: DictConfig, split: str, checkpoint: str | None,
                      train_records: Sequence[QARecord] | None = None,
                      extra: dict[str, Any] | None = None, in_split: int | None = None) -> dict[str, Any]:
    """Score ``predictions`` against ``records``, check leakage, write the evaluation directory.

    Writes ``predictions.json``, ``per_question.jsonl``, ``config.yaml`` and ``metrics.json``
    into ``out_dir``; returns the ``metrics.json`` content. When a limit cut the evaluation short
    (:func:`evaluation_limits`), only the questions that were evaluated are scored, and ``metrics.json`` says
    so (``num_questions`` evaluated, ``num_questions_in_split``, ``evaluation_limited_by``); otherwise the
    predictions must cover ``records`` exactly.
    """
    limits = evaluation_limits(cfg)
    total = len(records) if in_split is None else in_split
    if limits.get("trainer.limit_test_batches") is not None:
        asked = {p["question_id"] for p in predictions}
        records = [r for r in records if r.question_id in asked]
        log.warning("%s split: %d of %d questions evaluated (%s)", split, len(records), total,
                    ", ".join(f"{k}={v}" for k, v in limits.items()))
    rows = score_predictions(records, predictions)
    boot = cfg.eval.bootstrap
    accuracy = summarize(rows, resamples=boot.resamples, seed=boot.seed, level=boot.level)
    if train_records is None:
        leakage: dict[str, Any] = {"checked": False, "reason": "training split not available"}
    else:
        leakage = {"checked": True, **check_leakage(train_records, records)}
        warn_leakage(leakage, split)
    write_rows(out_dir, rows)
    save_config(cfg, out_dir / "config.yaml")
    metrics = {
        "split": split,
        "checkpoint": checkpoint,
        "config_hash": config_hash(to_container(cfg)),
        "num_questions": len(rows),
        "num_questions_in_split": total,
        "evaluation_limited_by": limits,
        "accuracy": accuracy,
        "leakage": leakage,
        "training_targets": training_targets(cfg),
        **(extra or {}),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def finish_datasets(out_dir: Path, dm: Any, predictions: Sequence[Mapping[str, Any]], cfg: DictConfig, split: str,
                    checkpoint: str | None, with_train: bool = True,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`finish_evaluation` for a data module's split: into ``out_dir`` for one dataset; with
    several (``data.mixture``), into ``out_dir/<dataset>/`` each, since question ids are only unique
    within a dataset. Returns the first dataset's metrics plus ``"datasets"``: name → overall accuracy."""
    if len(dm.specs) == 1:
        train = _train_records(dm, split) if with_train else None
        size = dm.split_sizes.get((dm.specs[0].name, split))
        return finish_evaluation(out_dir, dm.records[split], predictions, cfg, split, checkpoint, train, extra, size)
    results: dict[str, dict[str, Any]] = {}
    for spec in dm.specs:
        records = dm.dataset_records(spec.name, split)
        if not records:
            continue
        preds = [{"question_id": p["question_id"], "answer": p["answer"]} for p in predictions
                 if p.get("dataset") == spec.name]
        train = dm.dataset_records(spec.name, "train") if with_train else None
        results[spec.name] = finish_evaluation(out_dir / spec.name, records, preds, cfg, split, checkpoint, train,
                                               {**(extra or {}), "dataset": spec.name},
                                               dm.split_sizes.get((spec.name, split)))
    first = next(iter(results.values()))
    return {**first, "datasets": {name: r["accuracy"]["overall"] for name, r in results.items()}}


def evaluation_limits(cfg: DictConfig) -> dict[str, Any]:
    """The settings that evaluate fewer questions than the split holds (``{}`` when none is set)."""
    limits = {"trainer.limit_test_batches": cfg.trainer.get("limit_test_batches"),
              "data.limit_questions": cfg.data.get("limit_questions")}
    if isinstance(limits["trainer.limit_test_batches"], float) and limits["trainer.limit_test_batches"] == 1.0:
        limits["trainer.limit_test_batches"] = None  # Lightning: a float is a fraction (1.0 = all), an int batches
    return {k: v for k, v in limits.items() if v is not None}


def evaluated_line(metrics: Mapping[str, Any]) -> str | None:
    """``evaluated 448 of 960 questions (trainer.limit_test_batches=1)`` when a limit cut the split short."""
    limits = metrics.get("evaluation_limited_by") or {}
    if not limits:
        return None
    return (f"evaluated {metrics['num_questions']} of {metrics['num_questions_in_split']} questions of the split ("
            + ", ".join(f"{k}={v}" for k, v in limits.items()) + ")")


def training_targets(cfg: DictConfig) -> str:
    """The training-target convention, in words (recorded next to every accuracy)."""
    if "vqa" not in cfg.tasks.active:
        g = cfg.tasks.answer_generation
        return (f"generated answers: teacher forcing on the {g.target} annotator answer, decoded by {g.decode}; "
                f"answer words seen fewer than {g.min_word_count} time(s) in training are [UNK]")
    loss = cfg.tasks.vqa.loss
    return (f"soft VQA targets: each vocabulary answer's target is the score the metric would give it "
            f"(official leave-one-out accuracy of the normalised answer, mmfuse.metrics.vqa.answer_scores); "
            f"loss {loss!r} ({'per-answer sigmoid BCE' if loss == 'bce' else 'soft-target cross-entropy'}); "
            f"answers outside the vocabulary (top_k={cfg.data.answer_vocab.top_k}, "
            f"min_count={cfg.data.answer_vocab.min_count}) have no target")


def _train_records(dm: Any, split: str) -> list[QARecord] | None:
    try:
        return dm.split_records("train")
    except (DataError, FileNotFoundError, OSError, ValueError, TypeError) as e:
        log.warning("leakage check skipped: cannot load the training split (%s)", e)
        return None
