"""``evaluate(cfg)`` and the evaluation outputs shared with ``train(cfg)``'s test stage."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from omegaconf import DictConfig
from torch import nn

from mmfuse.config import ConfigError, save_config, to_container
from mmfuse.data.schema import QARecord
from mmfuse.data.sources import DataError
from mmfuse.data.tokenizer import tokenizer_from_json
from mmfuse.data.vocab import AnswerVocab
from mmfuse.evaluation.leakage import check_leakage, warn_leakage
from mmfuse.evaluation.results import config_hash, score_predictions, summarize, write_rows
from mmfuse.utils import write_json

log = logging.getLogger(__name__)


def finish_evaluation(out_dir: Path, records: Sequence[QARecord], predictions: Sequence[Mapping[str, Any]],
                      cfg: DictConfig, split: str, checkpoint: Optional[str],
                      train_records: Optional[Sequence[QARecord]] = None,
                      extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Score ``predictions`` against ``records``, check leakage, write the evaluation directory.

    Writes ``predictions.json``, ``per_question.jsonl``, ``config.yaml`` and ``metrics.json``
    into ``out_dir``; returns the ``metrics.json`` content.
    """
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
        "accuracy": accuracy,
        "leakage": leakage,
        "training_targets": training_targets(cfg),
        **(extra or {}),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def finish_datasets(out_dir: Path, dm: Any, predictions: Sequence[Mapping[str, Any]], cfg: DictConfig, split: str,
                    checkpoint: Optional[str], with_train: bool = True,
                    extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """:func:`finish_evaluation` for a data module's split: into ``out_dir`` for one dataset; with
    several (``data.mixture``), into ``out_dir/<dataset>/`` each, since question ids are only unique
    within a dataset. Returns the first dataset's metrics plus ``"datasets"``: name → overall accuracy."""
    if len(dm.specs) == 1:
        train = _train_records(dm, split) if with_train else None
        return finish_evaluation(out_dir, dm.records[split], predictions, cfg, split, checkpoint, train, extra)
    results: dict[str, dict[str, Any]] = {}
    for spec in dm.specs:
        records = dm.dataset_records(spec.name, split)
        if not records:
            continue
        preds = [{"question_id": p["question_id"], "answer": p["answer"]} for p in predictions
                 if p.get("dataset") == spec.name]
        train = dm.dataset_records(spec.name, "train") if with_train else None
        results[spec.name] = finish_evaluation(out_dir / spec.name, records, preds, cfg, split, checkpoint, train,
                                               {**(extra or {}), "dataset": spec.name})
    first = next(iter(results.values()))
    return {**first, "datasets": {name: r["accuracy"]["overall"] for name, r in results.items()}}


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


def _train_records(dm: Any, split: str) -> Optional[list[QARecord]]:
    try:
        return dm.split_records("train")
    except (DataError, FileNotFoundError, OSError, ValueError, TypeError) as e:
        log.warning("leakage check skipped: cannot load the training split (%s)", e)
        return None


def evaluate(cfg: DictConfig, fusion: Optional[nn.Module] = None, report: Optional[bool] = None) -> dict[str, Any]:
    """Evaluate ``cfg.eval.checkpoint`` on ``cfg.eval.split``; writes the evaluation directory.

    The checkpoint supplies the model, the answer vocabulary and the tokenizer; ``cfg`` supplies
    the data (so a model can be scored on another dataset of the same format). The output folder
    is ``cfg.eval.output`` or ``<run>/eval_<split>/``; with ``report`` (default ``cfg.eval.report``)
    figures and an ``index.html`` are added under ``report/``. Returns the ``metrics.json`` content
    plus ``"output"`` (its path).
    """
    from mmfuse.train import _trainer, build_datamodule, load_system  # train imports this module

    if not cfg.eval.checkpoint:
        raise ConfigError("evaluate needs eval.checkpoint=<path to a .ckpt>")
    ckpt_path = Path(cfg.eval.checkpoint)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    system = load_system(str(ckpt_path), fusion)
    if system.tokenizer_json is None:
        raise ValueError(f"{ckpt_path}: checkpoint holds no tokenizer (not written by mmfuse.train?)")
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    dm = build_datamodule(cfg, None, vocab=AnswerVocab(system.answers),
                          tokenizer=tokenizer_from_json(system.tokenizer_json))
    dm.img_size = system.model.image_size
    split = cfg.eval.split
    dm.split_records(split)
    dm.check_media(system.model.is_video)
    hp = system.hparams
    system.set_answer_types(sorted(set(hp.answer_types) | set(dm.types("answer_type"))),
                            sorted(set(hp.get("question_types", ())) | set(dm.types("question_type"))))
    if cfg.eval.task is not None:
        if cfg.eval.task not in system.active:
            raise ConfigError(f"eval.task={cfg.eval.task!r} but the checkpoint trained {system.active}")
        system.prediction_task = cfg.eval.task
    loader = dm.loader(split)  # builds the split; unreadable images may drop records (skip_bad_records)
    trainer = _trainer(cfg, run_dir, [], logger=False)
    lightning = trainer.test(system, dataloaders=loader, verbose=False)[0]
    out_dir = Path(cfg.eval.output) if cfg.eval.output else run_dir / f"eval_{split}"
    metrics = finish_datasets(out_dir, dm, system.predictions, cfg, split, str(ckpt_path),
                              extra={"skipped_bad_records": dict(dm.skipped), "padded_short_videos": dict(dm.padded_videos),
                                     "lightning": {k: float(v) for k, v in lightning.items()}})
    if cfg.eval.report if report is None else report:
        from mmfuse.evaluation.report import write_report

        metrics["report"] = str(write_report(out_dir, run_dir, system, dm, split, cfg.eval.report_samples, cfg.seed))
    metrics["output"] = str(out_dir / "metrics.json")
    return metrics
