"""``evaluate(cfg)``: score a checkpoint on a split and write its evaluation directory (and report); with a
:class:`~mmfuse.evaluation.robustness.RobustnessRequest`, also once per corruption level and missing modality."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from lightning.fabric.utilities.data import AttributeDict
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mmfuse.callbacks import DroppedQuestions
from mmfuse.checkpoints import read_checkpoint
from mmfuse.config import complete_config, load_config
from mmfuse.data.corrupt import BatchCorruption
from mmfuse.data.datamodule import VQADataModule
from mmfuse.data.tokenizer import tokenizer_from_json
from mmfuse.data.vocab import AnswerVocab
from mmfuse.errors import ConfigError
from mmfuse.evaluation.outputs import evaluation_limits, finish_datasets, finish_evaluation, training_targets
from mmfuse.evaluation.results import score_predictions
from mmfuse.evaluation.robustness import CorruptBatches, RobustnessRequest, level_accuracy, robustness_results
from mmfuse.runner import build_datamodule, build_trainer, load_system, skipped_records
from mmfuse.systems import BaseSystem
from mmfuse.utils import write_json

log = logging.getLogger(__name__)
__all__ = ["checkpoint_config", "evaluate", "finish_datasets", "finish_evaluation", "training_targets"]


def checkpoint_config(checkpoint: str | Path, overrides: Sequence[str] = (), trust: bool = False) -> DictConfig:
    """The config to evaluate ``checkpoint`` with: the run's own (stored in the checkpoint, completed to the
    current schema), then ``overrides`` (``key=value``), with ``eval.checkpoint`` set. Raises ConfigError."""
    saved = read_checkpoint(checkpoint, trust=trust, mmap=True)["hyper_parameters"]["cfg"]
    run_cfg = OmegaConf.create(complete_config(saved))  # checkpoints of older versions: current schema
    with tempfile.TemporaryDirectory() as tmp:  # the checkpoint's folder may be read-only
        OmegaConf.save(run_cfg, Path(tmp) / "run.yaml")
        return load_config([Path(tmp) / "run.yaml"], [*overrides, f"eval.checkpoint={checkpoint}",
                                                      f"trust_checkpoint={str(trust).lower()}"])


def evaluate(cfg: DictConfig, fusion: nn.Module | None = None, report: bool | None = None,
             robustness: RobustnessRequest | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.eval.checkpoint`` on ``cfg.eval.split``; writes the evaluation directory.

    The checkpoint supplies the model, the answer vocabulary and the tokenizer; ``cfg`` supplies
    the data (so a model can be scored on another dataset of the same format). The output folder
    is ``cfg.eval.output`` or ``<run>/eval_<split>/``; with ``report`` (default ``cfg.eval.report``)
    figures and an ``index.html`` are added under ``report/``. Returns the ``metrics.json`` content
    plus ``"output"`` (its path).

    ``robustness``: after the plain evaluation, the split is evaluated again once per corruption level of each
    spec and once per missing modality (:mod:`mmfuse.evaluation.robustness`); ``metrics.json`` gains the
    ``robustness``, ``missing`` and ``robustness_convention`` blocks (one dataset only, not a ``data.mixture``).
    """
    if not cfg.eval.checkpoint:
        raise ConfigError("evaluate needs eval.checkpoint=<path to a .ckpt>")
    ckpt_path = Path(cfg.eval.checkpoint)
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    system = load_system(str(ckpt_path), fusion, trust_checkpoint=bool(cfg.trust_checkpoint))
    if system.tokenizer_json is None:
        raise ValueError(f"{ckpt_path}: checkpoint holds no tokenizer (not written by mmfuse.train?)")
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    dm = build_datamodule(cfg, None, vocab=AnswerVocab(system.answers),
                          tokenizer=tokenizer_from_json(system.tokenizer_json))
    dm.img_size = system.model.image_size
    split = cfg.eval.split
    if robustness and len(dm.specs) > 1:
        raise ConfigError(f"--corrupt / --missing evaluate one dataset; data.mixture has {len(dm.specs)}: evaluate "
                          "each alone (data.source=... with its paths)")
    dm.split_records(split)
    dm.check_media(system.model.is_video)
    hp = cast(AttributeDict, system.hparams)  # save_hyperparameters() stored them
    system.set_answer_types(sorted(set(hp.answer_types) | set(dm.types("answer_type"))),
                            sorted(set(hp.get("question_types", ())) | set(dm.types("question_type"))))
    if cfg.eval.task is not None:
        if cfg.eval.task not in system.active:
            raise ConfigError(f"eval.task={cfg.eval.task!r} but the checkpoint trained {system.active}")
        system.prediction_task = cfg.eval.task
    dm.test_split = split  # the test loop runs this split; the data module builds its loader once the
    # processes exist, so in a distributed run each takes its share of the batches, once each
    dropped = DroppedQuestions(test_split=split)
    trainer = build_trainer(cfg, run_dir, [dropped], logger=False)
    lightning = trainer.test(system, datamodule=dm, verbose=False)[0]
    skipped = skipped_records(dm, dropped)  # every process takes part (gathers the counts)
    predictions = list(system.predictions)  # the robustness passes below replace system.predictions
    robust = _robustness(cfg, run_dir, system, dm, robustness) if robustness else None  # every process runs them
    if not trainer.is_global_zero:  # predictions were gathered on every process; the first writes them
        return {"global_rank": trainer.global_rank}
    out_dir = Path(cfg.eval.output) if cfg.eval.output else run_dir / f"eval_{split}"
    metrics = finish_datasets(out_dir, dm, predictions, cfg, split, str(ckpt_path),
                              extra={"skipped_bad_records": skipped, "world_size": trainer.world_size,
                                     "padded_short_videos": dict(dm.padded_videos),
                                     "lightning": {k: float(v) for k, v in lightning.items()}})
    if robust is not None:
        metrics.update(robust)
        write_json(out_dir / "metrics.json", metrics)
    if cfg.eval.report if report is None else report:
        from mmfuse.evaluation.report import write_report

        metrics["report"] = str(write_report(out_dir, run_dir, system, dm, split, cfg.eval.report_samples, cfg.seed))
    metrics["output"] = str(out_dir / "metrics.json")
    metrics["global_rank"] = 0
    return metrics


def _robustness(cfg: DictConfig, run_dir: Path, system: BaseSystem, dm: VQADataModule,
                request: RobustnessRequest) -> dict[str, Any]:
    """The robustness passes after the plain test pass (whose predictions ``system`` still holds): each a fresh
    trainer whose :class:`CorruptBatches` callback corrupts the batches on their way to ``test_step``."""
    split = cfg.eval.split
    limited = evaluation_limits(cfg).get("trainer.limit_test_batches") is not None

    def score(predictions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        records = dm.records[split]  # after any unreadable images were skipped
        if limited:  # as finish_evaluation: only the questions that were evaluated
            asked = {p["question_id"] for p in predictions}
            records = [r for r in records if r.question_id in asked]
        return score_predictions(records, predictions)

    clean = level_accuracy(score(system.predictions))
    seed = int(cfg.eval.bootstrap.seed if request.seed is None else request.seed)
    image_keys = {r.question_id: r.image_key for r in dm.records[split]}
    mean = getattr(system.model, "mean", None)  # the colour that normalises to zero: "no image"
    fill = (128, 128, 128) if mean is None else cast(tuple[int, int, int], tuple(round(255 * float(m)) for m in mean))

    def run_pass(spec: str, level: float) -> list[dict[str, Any]]:
        corruption = BatchCorruption(spec, level, seed, image_keys, dm.tokenizer, int(cfg.data.max_question_length),
                                     fill)
        build_trainer(cfg, run_dir, [CorruptBatches(corruption)], logger=False).test(system, datamodule=dm,
                                                                                      verbose=False)
        rows = score(system.predictions)
        log.info("robustness: %s at level %g: %s%%", spec, level, level_accuracy(rows)["overall"])
        return rows

    out = robustness_results(request, run_pass, clean)
    out["robustness_convention"].update(seed=seed, fill=list(fill))
    return out
