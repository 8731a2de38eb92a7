"""``evaluate(cfg)``: score a checkpoint on a split and write its evaluation directory (and report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from lightning.fabric.utilities.data import AttributeDict
from omegaconf import DictConfig
from torch import nn

from mmfuse.callbacks import DroppedQuestions
from mmfuse.data.tokenizer import tokenizer_from_json
from mmfuse.data.vocab import AnswerVocab
from mmfuse.errors import ConfigError
from mmfuse.evaluation.outputs import finish_datasets, finish_evaluation, training_targets
from mmfuse.runner import build_datamodule, build_trainer, load_system, skipped_records

__all__ = ["evaluate", "finish_datasets", "finish_evaluation", "training_targets"]


def evaluate(cfg: DictConfig, fusion: nn.Module | None = None, report: bool | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.eval.checkpoint`` on ``cfg.eval.split``; writes the evaluation directory.

    The checkpoint supplies the model, the answer vocabulary and the tokenizer; ``cfg`` supplies
    the data (so a model can be scored on another dataset of the same format). The output folder
    is ``cfg.eval.output`` or ``<run>/eval_<split>/``; with ``report`` (default ``cfg.eval.report``)
    figures and an ``index.html`` are added under ``report/``. Returns the ``metrics.json`` content
    plus ``"output"`` (its path).
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
    if not trainer.is_global_zero:  # predictions were gathered on every process; the first writes them
        return {"global_rank": trainer.global_rank}
    out_dir = Path(cfg.eval.output) if cfg.eval.output else run_dir / f"eval_{split}"
    metrics = finish_datasets(out_dir, dm, system.predictions, cfg, split, str(ckpt_path),
                              extra={"skipped_bad_records": skipped, "world_size": trainer.world_size,
                                     "padded_short_videos": dict(dm.padded_videos),
                                     "lightning": {k: float(v) for k, v in lightning.items()}})
    if cfg.eval.report if report is None else report:
        from mmfuse.evaluation.report import write_report

        metrics["report"] = str(write_report(out_dir, run_dir, system, dm, split, cfg.eval.report_samples, cfg.seed))
    metrics["output"] = str(out_dir / "metrics.json")
    metrics["global_rank"] = 0
    return metrics
